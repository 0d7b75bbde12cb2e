package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/go-logfmt/logfmt"
)

// stopExporter ends the exporter with SIGTERM and waits, so its log is
// complete and no longer written.
func stopExporter(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

// logRecords parses the exporter's log, logfmt or JSON, into key sets by
// message.
func logRecords(t *testing.T, format, log string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		rec := map[string]string{}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("not a JSON record: %q: %v", line, err)
			}
			for k, v := range m {
				s, _ := v.(string)
				rec[k] = s
			}
		} else {
			d := logfmt.NewDecoder(strings.NewReader(line))
			for d.ScanRecord() {
				for d.ScanKeyval() {
					rec[string(d.Key())] = string(d.Value())
				}
			}
			if d.Err() != nil {
				t.Fatalf("not a logfmt record: %q: %v", line, d.Err())
			}
		}
		out[rec["msg"]] = rec
	}
	return out
}

// TestLogKeys runs the binary in both formats: a line of ours ("starting
// memfrag_exporter", go-kit) and one of exporter-toolkit's ("Listening on",
// slog) carry the same keys for time, level, caller and message.
func TestLogKeys(t *testing.T) {
	bin := buildBinary(t)
	root := "collector/testdata/seed-before"
	for _, format := range []string{"logfmt", "json"} {
		t.Run(format, func(t *testing.T) {
			cmd, _, logs := startExporter(t, bin, "--log.format="+format, "--path.procfs="+root+"/proc", "--path.sysfs="+root+"/sys")
			stopExporter(t, cmd)
			recs := logRecords(t, format, logs.String())
			ours, toolkit := recs["starting memfrag_exporter"], recs["Listening on"]
			if ours == nil || toolkit == nil {
				t.Fatalf("missing records in:\n%s", logs)
			}
			common := []string{"caller", "level", "msg", "ts"}
			for name, rec := range map[string]map[string]string{"ours": ours, "exporter-toolkit's": toolkit} {
				var got []string
				for _, k := range []string{"caller", "level", "msg", "time", "ts"} {
					if _, ok := rec[k]; ok {
						got = append(got, k)
					}
				}
				sort.Strings(got)
				if strings.Join(got, ",") != strings.Join(common, ",") {
					t.Errorf("%s record has keys %v, want %v: %v", name, got, common, rec)
				}
				if rec["level"] != "info" {
					t.Errorf("%s record: level %q", name, rec["level"])
				}
				if !strings.HasSuffix(rec["ts"], "Z") || !strings.Contains(rec["caller"], ".go:") {
					t.Errorf("%s record: ts %q, caller %q", name, rec["ts"], rec["caller"])
				}
			}
		})
	}
}

// TestPathMisconfiguration: a --path.procfs that does not exist or holds no
// buddyinfo is reported at start at error level as a misconfiguration; a
// real procfs tree missing one file is not (that is a kernel without the
// feature, which the collector reports on its own).
func TestPathMisconfiguration(t *testing.T) {
	bin := buildBinary(t)
	root, err := filepath.Abs("collector/testdata/seed-before")
	if err != nil {
		t.Fatal(err)
	}
	sys := t.TempDir() // the fixture has no sysfs: an empty one is sound
	noBuddyinfo := t.TempDir()
	noVmstat := t.TempDir()
	if err := os.CopyFS(noVmstat, os.DirFS(root+"/proc")); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(noVmstat, "vmstat"))
	for _, tc := range []struct {
		name, proc, sys string
		want            string // in the error line's err; "" for none
	}{
		{"procfs missing", "/nonexistent/proc", sys, "--path.procfs=/nonexistent/proc: stat /nonexistent/proc: no such file or directory"},
		{"sysfs missing", root + "/proc", "/nonexistent/sys", "--path.sysfs=/nonexistent/sys"},
		{"procfs without buddyinfo", noBuddyinfo, sys, "--path.procfs=" + noBuddyinfo + " has no buddyinfo"},
		{"procfs without vmstat", noVmstat, sys, ""},
		{"fixture", root + "/proc", sys, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, _, logs := startExporter(t, bin, "--path.procfs="+tc.proc, "--path.sysfs="+tc.sys)
			stopExporter(t, cmd)
			var found []map[string]string
			for _, rec := range logRecords(t, "logfmt", logs.String()) {
				if strings.HasPrefix(rec["msg"], "misconfiguration") {
					found = append(found, rec)
				}
			}
			switch {
			case tc.want == "" && len(found) > 0:
				t.Errorf("misconfiguration reported for a sound tree: %v", found)
			case tc.want != "" && len(found) != 1:
				t.Errorf("want one misconfiguration line, got %v in:\n%s", found, logs)
			case tc.want != "" && (found[0]["level"] != "error" || !strings.Contains(found[0]["err"], tc.want)):
				t.Errorf("got %v, want level=error and err containing %q", found[0], tc.want)
			}
		})
	}
}
