package npd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The fields node-problem-detector documents for its monitor configs
// (docs/custom_plugin_monitor.md, config/*.json): the configs are decoded
// with unknown fields refused, so a misspelt field fails here instead of
// being ignored by NPD.

type condition struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type pluginRule struct {
	Type           string   `json:"type"`
	Condition      string   `json:"condition"`
	Reason         string   `json:"reason"`
	Path           string   `json:"path"`
	Args           []string `json:"args"`
	Timeout        *string  `json:"timeout"`
	InvokeInterval *string  `json:"invoke_interval"`
}

type pluginMonitor struct {
	Plugin       string `json:"plugin"`
	PluginConfig struct {
		InvokeInterval                          string `json:"invoke_interval"`
		Timeout                                 string `json:"timeout"`
		MaxOutputLength                         int    `json:"max_output_length"`
		Concurrency                             int    `json:"concurrency"`
		EnableMessageChangeBasedConditionUpdate *bool  `json:"enable_message_change_based_condition_update"`
		SkipInitialStatus                       *bool  `json:"skip_initial_status"`
	} `json:"pluginConfig"`
	Source           string       `json:"source"`
	MetricsReporting *bool        `json:"metricsReporting"`
	Conditions       []condition  `json:"conditions"`
	Rules            []pluginRule `json:"rules"`
}

type logRule struct {
	Type                          string `json:"type"`
	Condition                     string `json:"condition"`
	Reason                        string `json:"reason"`
	Pattern                       string `json:"pattern"`
	PatternGeneratedMessageSuffix string `json:"patternGeneratedMessageSuffix"`
}

type logMonitor struct {
	Plugin           string            `json:"plugin"`
	PluginConfig     map[string]string `json:"pluginConfig"`
	LogPath          string            `json:"logPath"`
	Lookback         string            `json:"lookback"`
	Delay            string            `json:"delay"`
	SkipList         []string          `json:"skipList"`
	BufferSize       int               `json:"bufferSize"`
	Source           string            `json:"source"`
	MetricsReporting *bool             `json:"metricsReporting"`
	Conditions       []condition       `json:"conditions"`
	Rules            []logRule         `json:"rules"`
}

func decodeStrict(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func duration(t *testing.T, what, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s %q: want a positive duration (%v)", what, s, err)
	}
	return d
}

// checkPluginMonitor applies NPD's own validation (ApplyConfiguration,
// Validate) and ours: the rule runs memfrag_exporter inspect.
func checkPluginMonitor(t *testing.T, m *pluginMonitor) (globalTimeout time.Duration) {
	t.Helper()
	if m.Plugin != "custom" {
		t.Errorf("plugin %q, want custom", m.Plugin)
	}
	interval := duration(t, "invoke_interval", m.PluginConfig.InvokeInterval)
	globalTimeout = duration(t, "timeout", m.PluginConfig.Timeout)
	if globalTimeout >= interval {
		t.Errorf("timeout %v not below invoke_interval %v: runs would pile up", globalTimeout, interval)
	}
	if m.PluginConfig.MaxOutputLength <= 0 || m.PluginConfig.Concurrency <= 0 {
		t.Errorf("max_output_length %d, concurrency %d: want both positive", m.PluginConfig.MaxOutputLength, m.PluginConfig.Concurrency)
	}
	if m.Source == "" {
		t.Error("no source")
	}
	conds := map[string]bool{}
	for _, c := range m.Conditions {
		if c.Type == "" || c.Reason == "" || c.Message == "" {
			t.Errorf("condition %+v: want type, reason and message", c)
		}
		conds[c.Type] = true
	}
	if !conds["MemoryFragmented"] {
		t.Errorf("conditions %v: want MemoryFragmented", m.Conditions)
	}
	if len(m.Rules) == 0 {
		t.Fatal("no rules")
	}
	for _, r := range m.Rules {
		if r.Type != "permanent" && r.Type != "temporary" {
			t.Errorf("rule type %q", r.Type)
		}
		if r.Type == "permanent" && !conds[r.Condition] {
			t.Errorf("permanent rule's condition %q is not among the conditions", r.Condition)
		}
		if r.Reason == "" || !filepath.IsAbs(r.Path) || filepath.Base(r.Path) != "memfrag_exporter" {
			t.Errorf("rule %+v: want a reason and an absolute path to memfrag_exporter", r)
		}
		if len(r.Args) == 0 || r.Args[0] != "inspect" {
			t.Errorf("rule args %v: want inspect first", r.Args)
		}
		if r.Timeout != nil && duration(t, "rule timeout", *r.Timeout) > globalTimeout {
			t.Errorf("rule timeout %s above the global %v: NPD refuses the config", *r.Timeout, globalTimeout)
		}
	}
	return globalTimeout
}

// buildExporter builds the exporter from this checkout, or takes
// $MEMFRAG_EXPORTER (what `make build` made).
func buildExporter(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MEMFRAG_EXPORTER"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "memfrag_exporter")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runAsNPD runs a rule as the custom plugin monitor does
// (pkg/custompluginmonitor/plugin): the path with the args, killed at the
// rule's timeout (the global one if the rule has none), stdout trimmed of
// space and cut at max_output_length, exit status 0 OK, 1 problem, anything
// else unknown.
func runAsNPD(path string, args []string, timeout time.Duration, maxOutput int) (status, output string, full string, elapsed time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	elapsed = time.Since(start)
	if ctx.Err() != nil {
		return "Unknown", "", "", elapsed, errors.New("killed at the timeout")
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return "Unknown", "", "", elapsed, err
	}
	full = strings.TrimSpace(stdout.String())
	output = full
	if len(output) > maxOutput {
		output = output[:maxOutput]
	}
	switch cmd.ProcessState.Sys().(syscall.WaitStatus).ExitStatus() {
	case 0:
		status = "OK"
	case 1:
		status = "NonOK"
	default:
		status = "Unknown"
		output = strings.TrimSpace(stderr.String())
	}
	return status, output, full, elapsed, nil
}

func TestCustomPluginContract(t *testing.T) {
	var m pluginMonitor
	decodeStrict(t, "memfrag-plugin-monitor.json", &m)
	globalTimeout := checkPluginMonitor(t, &m)
	bin := buildExporter(t)
	rule := m.Rules[0]
	timeout := globalTimeout
	if rule.Timeout != nil {
		timeout = duration(t, "rule timeout", *rule.Timeout)
	}
	fixtures := "../../collector/testdata"
	tests := []struct {
		name       string
		extra      []string // the fixture's paths, after the config's args
		wantStatus string
		wantOutput string // a prefix of the message
	}{
		{"healthy node", []string{"--path.procfs=" + fixtures + "/x86-vm/proc", "--path.sysfs=" + fixtures + "/x86-vm/sys"},
			"OK", "order-4 allocations: OK in every zone"},
		{"the seed's fragmented node", []string{"--path.procfs=" + fixtures + "/seed-before/proc", "--path.sysfs=" + fixtures + "/seed-before/sys"},
			"NonOK", "worst zone for order-4 allocations: at risk: node 0 zone Normal"},
		{"failing for fragmentation", []string{"--path.procfs=" + fixtures + "/no-compaction/proc", "--path.sysfs=" + fixtures + "/no-compaction/sys"},
			"NonOK", "worst zone for order-4 allocations: failing for fragmentation"},
		{"no procfs", []string{"--path.procfs=" + t.TempDir()}, "Unknown", "inspect:"},
		{"this machine", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string(nil), rule.Args...), tt.extra...)
			status, output, full, elapsed, err := runAsNPD(bin, args, timeout, m.PluginConfig.MaxOutputLength)
			if err != nil {
				t.Fatalf("%v after %v", err, elapsed)
			}
			t.Logf("%s in %v: %q", status, elapsed.Round(time.Millisecond), output)
			if tt.wantStatus == "" {
				if status == "Unknown" {
					t.Errorf("on this machine: status Unknown: %q", output)
				}
			} else if status != tt.wantStatus || !strings.HasPrefix(output, tt.wantOutput) {
				t.Errorf("status %s, message %q; want %s, %q...", status, output, tt.wantStatus, tt.wantOutput)
			}
			if status != "Unknown" && (full != output || strings.Contains(full, "\n")) {
				t.Errorf("stdout %q is not one line within max_output_length %d: NPD would cut it", full, m.PluginConfig.MaxOutputLength)
			}
		})
	}
}

// The kernel-log monitor's pattern, compiled as NPD does (anchored at the
// end of the buffered log, RE2), against the kernel's message formats.
func TestKernelMonitorPattern(t *testing.T) {
	var m logMonitor
	decodeStrict(t, "kernel-monitor-page-allocation.json", &m)
	if m.Plugin != "kmsg" || m.LogPath != "/dev/kmsg" || m.Source == "" || m.BufferSize <= 0 {
		t.Errorf("plugin %q logPath %q source %q bufferSize %d: want kmsg, /dev/kmsg, a source, a buffer", m.Plugin, m.LogPath, m.Source, m.BufferSize)
	}
	duration(t, "lookback", m.Lookback)
	if len(m.Rules) != 1 || m.Rules[0].Type != "temporary" || m.Rules[0].Reason != "PageAllocationFailure" {
		t.Fatalf("rules %+v: want one temporary PageAllocationFailure rule", m.Rules)
	}
	re, err := regexp.Compile(m.Rules[0].Pattern + `\z`)
	if err != nil {
		t.Fatal(err)
	}
	lines := []struct {
		text  string
		match bool
	}{
		{"kworker/u8:2: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null),cpuset=/,mems_allowed=0", true},
		{"swapper/0: page allocation failure: order:3, mode:0x2080020(GFP_ATOMIC)", true},
		{"Web Content: page allocation failure: order:10, mode:0x0", true},
		{"x: retrying after page allocation failure: order:4, mode:0x0", false},
		{"vmalloc error: size 4096, page order 4, failed to allocate pages", false},
		{"x: page allocation failure: order:, mode:0x0", false},
	}
	for _, l := range lines {
		if got := re.MatchString(l.text); got != l.match {
			t.Errorf("%q: match %v, want %v", l.text, got, l.match)
		}
	}
}
