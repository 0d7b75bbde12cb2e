package main

import (
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/common/version"
)

func TestFillVersion(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "vcs.revision", Value: "5a07e402289f1dcb3fcbe5adf66c58e8f244883b"},
		{Key: "vcs.time", Value: "2026-12-01T22:41:08Z"},
		{Key: "vcs.modified", Value: "false"},
	}
	for _, tc := range []struct {
		name                    string
		preset                  [2]string // Version, Revision from ldflags
		bi                      *debug.BuildInfo
		ok                      bool
		version, revision, date string
		branch                  string
	}{
		{"pseudo-version from a clone", [2]string{}, &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201224108-5a07e402289f"}, Settings: vcs}, true,
			"0.0.0-20261201224108-5a07e402289f", "5a07e402289f1dcb3fcbe5adf66c58e8f244883b", "2026-12-01T22:41:08Z", "unknown"},
		{"tagged module", [2]string{}, &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, true,
			"1.2.3", "unknown", "unknown", "unknown"},
		{"modified tree", [2]string{}, &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}}, true,
			"devel", "abc-modified", "unknown", "unknown"},
		{"no build info", [2]string{}, nil, false, "devel", "unknown", "unknown", "unknown"},
		{"ldflags win", [2]string{"9.9.9", "deadbeef"}, &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs}, true,
			"9.9.9", "deadbeef", "2026-12-01T22:41:08Z", "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := [5]string{version.Version, version.Revision, version.Branch, version.BuildUser, version.BuildDate}
			t.Cleanup(func() {
				version.Version, version.Revision, version.Branch, version.BuildUser, version.BuildDate = saved[0], saved[1], saved[2], saved[3], saved[4]
			})
			version.Version, version.Revision = tc.preset[0], tc.preset[1]
			version.Branch, version.BuildUser, version.BuildDate = "", "", ""
			fillVersion(tc.bi, tc.ok)
			got := []string{version.Version, version.Revision, version.BuildDate, version.Branch, version.BuildUser}
			want := []string{tc.version, tc.revision, tc.date, tc.branch, "unknown"}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("got %q, want %q", got, want)
					break
				}
			}
		})
	}
}

// TestVersionWithoutLdflags builds the binary as `go build` does, without
// ldflags, and checks --version reports what the binary's build info holds
// (go version -m): its module version and, when Go recorded it, the VCS
// revision; never an empty version.
func TestVersionWithoutLdflags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "memfrag_exporter")
	if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	modVersion, revision := "", ""
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			modVersion = f[2]
		case len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			revision = strings.TrimPrefix(f[1], "vcs.revision=")
		}
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	v := string(out)
	wantVersion := strings.TrimPrefix(modVersion, "v")
	if modVersion == "(devel)" || modVersion == "" {
		wantVersion = "devel"
	}
	if !strings.Contains(v, "version "+wantVersion+" ") {
		t.Errorf("--version does not report module version %q:\n%s", wantVersion, v)
	}
	if revision != "" && !strings.Contains(v, "revision: "+revision) {
		t.Errorf("--version does not report revision %s:\n%s", revision, v)
	}
	if strings.Contains(v, "version  ") || strings.Contains(v, "revision: )") || strings.Contains(v, "build date:       \n") {
		t.Errorf("--version has blank fields:\n%s", v)
	}
	t.Logf("module %s, revision %q:\n%s", modVersion, revision, v)
}
