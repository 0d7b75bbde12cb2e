package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// fixtureConfig points at a fixture tree: testdata/<name>/{proc,sys}.
func fixtureConfig(name string) Config {
	dir := filepath.Join("testdata", name)
	return Config{ProcPath: filepath.Join(dir, "proc"), SysPath: filepath.Join(dir, "sys"), PageSize: 4096, UnusableThreshold: DefaultUnusableThreshold}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (go test ./report -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestInspectGolden(t *testing.T) {
	// The output does not depend on --fail-on, only the status does: rows
	// that differ in it share a golden file.
	tests := []struct {
		fixture string
		order   int
		output  string
		failOn  string
		status  int
	}{
		// The seed's fragmented node: Normal at risk at order 4 (unusable
		// 0.996, one order-10 block left). Not failing, so the default gate
		// passes it; --fail-on=at-risk stops on it.
		{"seed-before", 4, "table", "", ExitOK},
		{"seed-before", 4, "table", FailOnFailing, ExitOK},
		{"seed-before", 4, "table", FailOnAtRisk, ExitFailing},
		{"seed-before", 4, "json", "", ExitOK},
		{"seed-before", 4, "json", FailOnAtRisk, ExitFailing},
		{"seed-before", 9, "table", "", ExitFailing}, // DMA32 has no 2 MiB block
		{"seed-before", 9, "table", FailOnAtRisk, ExitFailing},
		{"seed-after-drop", 4, "table", "", ExitOK},
		{"seed-after-drop", 4, "table", FailOnAtRisk, ExitFailing}, // still at risk after drop_caches
		{"seed-after-compact", 4, "table", "", ExitOK},
		{"seed-after-compact", 4, "table", FailOnAtRisk, ExitOK}, // compaction cured it
		{"seed-after-compact", 9, "json", "", ExitOK},
		{"seed-after-compact", 9, "json", FailOnAtRisk, ExitFailing}, // huge pages still at risk
		{"two-nodes-failing", 4, "table", "", ExitFailing},
		{"two-nodes-failing", 4, "table", FailOnAtRisk, ExitFailing},
		{"two-nodes-failing", 4, "json", "", ExitFailing},
	}
	for _, tt := range tests {
		ext := map[string]string{"table": "txt", "json": "json"}[tt.output]
		name := fmt.Sprintf("%s.order%02d.%s", tt.fixture, tt.order, ext)
		t.Run(name+"/fail-on="+tt.failOn, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := Inspect(fixtureConfig(tt.fixture), InspectOptions{Order: tt.order, Output: tt.output, FailOn: tt.failOn}, &stdout, &stderr)
			if status != tt.status {
				t.Errorf("exit status %d, want %d; stderr: %s", status, tt.status, stderr.String())
			}
			if stderr.Len() > 0 {
				t.Errorf("unexpected stderr: %s", stderr.String())
			}
			if tt.output == "json" && !json.Valid(stdout.Bytes()) {
				t.Errorf("invalid JSON:\n%s", stdout.String())
			}
			golden(t, name, stdout.Bytes())
		})
	}
}

// TestInspectJSONVerdicts reads the JSON as a script would.
func TestInspectJSONVerdicts(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if status := Inspect(fixtureConfig("two-nodes-failing"), InspectOptions{Order: 4, Output: "json"}, &stdout, &stderr); status != ExitFailing {
		t.Fatalf("exit status %d, want %d", status, ExitFailing)
	}
	var doc struct {
		Verdict string
		Nodes   []struct {
			NUMANode string `json:"numa_node"`
			Zones    []struct {
				Zone               string
				Verdict            string
				FragmentationIndex float64 `json:"fragmentation_index"`
				Orders             []struct {
					FreeBlocks uint64 `json:"free_blocks"`
				}
			}
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range doc.Nodes {
		for _, z := range n.Zones {
			got[n.NUMANode+"/"+z.Zone] = z.Verdict
		}
	}
	want := map[string]string{"0/DMA": "ok", "0/DMA32": "at_risk", "0/Normal": "failing_fragmentation", "1/Normal": "failing_low_memory"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: verdict %q, want %q", k, got[k], v)
		}
	}
	if doc.Verdict != "failing_fragmentation" {
		t.Errorf("machine verdict %q, want failing_fragmentation", doc.Verdict)
	}
	if fi := doc.Nodes[0].Zones[2].FragmentationIndex; fi != 0.928 {
		t.Errorf("node 0 Normal fragmentation index %v, want 0.928", fi)
	}
	if n := doc.Nodes[0].Zones[2].Orders[0].FreeBlocks; n != 181022 {
		t.Errorf("node 0 Normal order-0 free blocks %d, want 181022", n)
	}
}

func TestInspectErrors(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		opts   InspectOptions
		stderr string
	}{
		{"no procfs", Config{ProcPath: t.TempDir(), SysPath: t.TempDir()}, InspectOptions{Order: 4}, "buddyinfo"},
		{"order above the kernel's", fixtureConfig("seed-before"), InspectOptions{Order: 11}, "outside this kernel's orders 0..10"},
		{"negative order", fixtureConfig("seed-before"), InspectOptions{Order: -1}, "outside"},
		{"unknown output", fixtureConfig("seed-before"), InspectOptions{Order: 4, Output: "xml"}, `unknown output "xml"`},
		{"unknown fail-on", fixtureConfig("seed-before"), InspectOptions{Order: 4, FailOn: "at_risk"}, `unknown --fail-on "at_risk"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if status := Inspect(tt.cfg, tt.opts, &stdout, &stderr); status != ExitError {
				t.Errorf("exit status %d, want %d", status, ExitError)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tt.stderr)
			}
		})
	}
}

// copyFixture copies a fixture tree into a temp dir so a test can remove
// parts of it.
func copyFixture(t *testing.T, name string) Config {
	t.Helper()
	src := filepath.Join("testdata", name)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return Config{ProcPath: filepath.Join(dst, "proc"), SysPath: filepath.Join(dst, "sys"), PageSize: 4096, UnusableThreshold: DefaultUnusableThreshold}
}

// TestInspectPartial: without zoneinfo the verdicts still hold (they need
// buddyinfo only) and the score is reported missing, not invented.
func TestInspectPartial(t *testing.T) {
	cfg := copyFixture(t, "two-nodes-failing")
	if err := os.Remove(filepath.Join(cfg.ProcPath, "zoneinfo")); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if status := Inspect(cfg, InspectOptions{Order: 4}, &stdout, &stderr); status != ExitFailing {
		t.Errorf("exit status %d, want %d", status, ExitFailing)
	}
	if !strings.Contains(stderr.String(), "warning: no compaction score") {
		t.Errorf("stderr %q lacks the warning", stderr.String())
	}
	if !strings.Contains(stdout.String(), "compaction score unknown") {
		t.Errorf("stdout does not say the score is unknown:\n%s", stdout.String())
	}
}

func TestReaderOptionalFiles(t *testing.T) {
	cfg := copyFixture(t, "seed-before")
	for _, p := range []string{
		filepath.Join(cfg.ProcPath, "sys/vm/compaction_proactiveness"),
		filepath.Join(cfg.SysPath, "kernel/mm/transparent_hugepage/hpage_pmd_size"),
	} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if s.Proactiveness != -1 || len(s.Warnings) != 0 {
		t.Errorf("proactiveness %d, warnings %q; want -1 and none (an old kernel is not a fault)", s.Proactiveness, s.Warnings)
	}
	if s.ScoreOrder != 9 || s.ScoreOrderFromSysfs {
		t.Errorf("score order %d (from sysfs %v), want the fallback 9", s.ScoreOrder, s.ScoreOrderFromSysfs)
	}
	if _, _, on := s.Thresholds(); on {
		t.Error("thresholds on without a proactiveness sysctl")
	}
	if !strings.Contains(s.ScoreSentence(&s.Nodes[0]), "no proactive compaction") {
		t.Errorf("score sentence %q", s.ScoreSentence(&s.Nodes[0]))
	}

	if err := os.WriteFile(filepath.Join(cfg.ProcPath, "sys/vm/compaction_proactiveness"), []byte("lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err = r.Read(); err != nil {
		t.Fatal(err)
	}
	if s.Proactiveness != -1 || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "not a number") {
		t.Errorf("bad sysctl: proactiveness %d, warnings %q", s.Proactiveness, s.Warnings)
	}
}

// TestFailOnGate pins which worst verdict trips each gate, failing for low
// memory included (no fixture has it alone).
func TestFailOnGate(t *testing.T) {
	tests := []struct {
		failOn string
		worst  Verdict
		trips  bool
	}{
		{FailOnFailing, OK, false},
		{FailOnFailing, AtRisk, false},
		{FailOnFailing, FailingLowMemory, false},
		{FailOnFailing, FailingFragmentation, true},
		{"", AtRisk, false},
		{"", FailingFragmentation, true},
		{FailOnAtRisk, OK, false},
		{FailOnAtRisk, AtRisk, true},
		{FailOnAtRisk, FailingLowMemory, true},
		{FailOnAtRisk, FailingFragmentation, true},
	}
	for _, tt := range tests {
		gate, err := gateFrom(tt.failOn)
		if err != nil {
			t.Fatal(err)
		}
		if got := tt.worst >= gate; got != tt.trips {
			t.Errorf("--fail-on=%q with worst %v: trips %v, want %v", tt.failOn, tt.worst, got, tt.trips)
		}
	}
}
