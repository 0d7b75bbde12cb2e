package main

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestCollectorSelection(t *testing.T) {
	defaults := map[string]bool{"buddyinfo": true, "zoneinfo": true, "compaction": true, "vmstat": true, "sysctl": true, "pagetypeinfo": false, "kmsg": false, "extfrag": false}
	with := func(changes map[string]bool) map[string]bool {
		m := map[string]bool{}
		for k, v := range defaults {
			m[k] = v
		}
		for k, v := range changes {
			m[k] = v
		}
		return m
	}
	allOff := with(map[string]bool{"buddyinfo": false, "zoneinfo": false, "compaction": false, "vmstat": false, "sysctl": false})
	for _, tc := range []struct {
		name string
		args []string
		want map[string]bool
	}{
		{"defaults", nil, defaults},
		{"one off", []string{"--no-collector.vmstat"}, with(map[string]bool{"vmstat": false})},
		{"opt-in", []string{"--collector.pagetypeinfo"}, with(map[string]bool{"pagetypeinfo": true})},
		{"disable-defaults alone", []string{"--collector.disable-defaults"}, allOff},
		{"disable-defaults keeps the named", []string{"--collector.disable-defaults", "--collector.buddyinfo", "--collector.kmsg"},
			with(map[string]bool{"zoneinfo": false, "compaction": false, "vmstat": false, "sysctl": false, "kmsg": true})},
		{"order does not matter", []string{"--collector.zoneinfo", "--collector.disable-defaults"},
			with(map[string]bool{"buddyinfo": false, "compaction": false, "vmstat": false, "sysctl": false})},
		{"named off stays off", []string{"--collector.disable-defaults", "--no-collector.buddyinfo"}, allOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseArgs(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(o.collectors.Enabled, tc.want) {
				t.Errorf("enabled %v, want %v", o.collectors.Enabled, tc.want)
			}
		})
	}
}

func TestParseErrorNamesProgramAndHelp(t *testing.T) {
	for _, args := range [][]string{{"--bogus"}, {"--web.max-requests=x"}, {"inspect", "--output=xml"}, {"frobnicate"}} {
		_, err := parseArgs(args)
		if err == nil {
			t.Fatalf("%v: no error", args)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "memfrag_exporter: error: ") || !strings.HasSuffix(msg, ", try --help") {
			t.Errorf("%v: %q", args, msg)
		}
	}
}

// TestHelp runs the binary: the usage line shows the command as optional
// (serve is the default), inspect --help lists its own flags before the
// global ones, --log.level and --log.format are next to each other, and no
// help text carries benchmark figures.
func TestHelp(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	help := string(out)
	if !strings.HasPrefix(help, "usage: memfrag_exporter [<flags>] [<command> [<flags>]]\n") {
		t.Errorf("usage line: %q", strings.SplitN(help, "\n", 2)[0])
	}
	for _, trivia := range []string{"MiB", " ms", "9%", "bench/"} {
		if strings.Contains(help, trivia) {
			t.Errorf("help carries benchmark figures (%q)", trivia)
		}
	}
	var flagLines []string
	for _, l := range strings.Split(help, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "--") {
			flagLines = append(flagLines, strings.SplitN(f[0], "=", 2)[0])
		}
	}
	i := indexOf(flagLines, "--log.level")
	if i < 0 || i+1 >= len(flagLines) || flagLines[i+1] != "--log.format" {
		t.Errorf("--log.format does not follow --log.level: %v", flagLines)
	}

	out, err = exec.Command(bin, "inspect", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("inspect --help: %v\n%s", err, out)
	}
	ih := string(out)
	own, global := strings.Index(ih, "Flags of inspect:"), strings.Index(ih, "Global flags:")
	order, listen := strings.Index(ih, "--order="), strings.Index(ih, "--web.listen-address")
	if own < 0 || global < own || !(own < order && order < global && global < listen) {
		t.Errorf("inspect --help does not list its own flags first:\n%s", ih)
	}
}

func indexOf(s []string, v string) int {
	for i := range s {
		if s[i] == v {
			return i
		}
	}
	return -1
}

// TestDisableDefaultsServes runs the binary: with --collector.disable-defaults
// and --collector.buddyinfo only buddyinfo runs and reports.
func TestDisableDefaultsServes(t *testing.T) {
	bin := buildBinary(t)
	root := "collector/testdata/seed-before"
	_, addr, _ := startExporter(t, bin, "--collector.disable-defaults", "--collector.buddyinfo",
		"--path.procfs="+root+"/proc", "--path.sysfs="+t.TempDir())
	code, body := get(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	var collectors []string
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, `memfrag_scrape_collector_success{collector="`); ok {
			collectors = append(collectors, strings.SplitN(rest, `"`, 2)[0])
		}
	}
	if strings.Join(collectors, ",") != "buddyinfo" {
		t.Errorf("collectors reporting: %v, want buddyinfo only", collectors)
	}
	if !strings.Contains(body, "memfrag_free_blocks{") || strings.Contains(body, "memfrag_zone_managed_bytes{") {
		t.Errorf("want buddyinfo's series and none of zoneinfo's")
	}
}
