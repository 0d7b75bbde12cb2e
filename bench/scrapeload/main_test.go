package main

import (
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    target
		wantErr bool
	}{
		{"ours=http://127.0.0.1:19793/metrics@42", target{"ours", "http://127.0.0.1:19793/metrics", 42}, false},
		{"a=http://[::1]:1/m?x=a@b@7", target{"a", "http://[::1]:1/m?x=a@b", 7}, false},
		{"http://127.0.0.1:1/metrics@42", target{}, true},
		{"=http://127.0.0.1:1/metrics@42", target{}, true},
		{"x=http://127.0.0.1:1/metrics", target{}, true},
		{"x=http://127.0.0.1:1/metrics@0", target{}, true},
		{"x=https://127.0.0.1:1/metrics@3", target{}, true},
	}
	for _, tt := range tests {
		got, err := parseTarget(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseTarget(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseExposition(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		series  int
		durSum  float64
		wantErr bool
	}{
		{"empty", "", 0, 0, false},
		{"ours", `# HELP memfrag_scrape_collector_duration_seconds x
# TYPE memfrag_scrape_collector_duration_seconds gauge
memfrag_scrape_collector_duration_seconds{collector="buddyinfo"} 1.5e-05
memfrag_scrape_collector_duration_seconds{collector="zoneinfo"} 2.5e-05
memfrag_scrape_collector_success{collector="buddyinfo"} 1
go_goroutines 7
`, 4, 4e-05, false},
		{"node_exporter, label with brace and space, timestamp", `node_scrape_collector_duration_seconds{collector="a} b"} 0.001 1700000000000
node_buddyinfo_blocks{node="0",size="0",zone="DMA"} 0
`, 2, 0.001, false},
		{"bad value", "memfrag_scrape_collector_duration_seconds{collector=\"x\"} abc\n", 1, 0, true},
		{"no value", "memfrag_scrape_collector_duration_seconds{collector=\"x\"}\n", 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseExposition([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if st.series != tt.series || math.Abs(st.durSum-tt.durSum) > 1e-12 {
				t.Errorf("got %d series, dur sum %g; want %d, %g", st.series, st.durSum, tt.series, tt.durSum)
			}
		})
	}
}

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"1234 (node_exporter) S 1 1234 1234 0 -1 4194560 2905 0 0 0 170 35 0 0 20 0 7 0 1000 1263378432 5227 18446744073709551615", 205, false},
		{"99 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0", 10, false},
		{"99 a R 1", 0, true},
		{"99 (a) R 1 1 1", 0, true},
		{"99 (a) R 1 1 1 0 -1 0 0 0 0 0 x 3 0 0", 0, true},
	}
	for _, tt := range tests {
		got, err := parseStatTicks([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseStatTicks(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"1242757 95523 3\n", 1242757, false},
		{"7\n", 7, false},
		{"", 0, true},
		{"-5 1 1\n", 0, true},
		{"1.5 1 1\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseSchedstat([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseSchedstat(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestThreadsDelta(t *testing.T) {
	tests := []struct {
		name          string
		before, after map[string]time.Duration
		want          time.Duration
		ok            bool
	}{
		{"same threads", map[string]time.Duration{"1": 10, "2": 5}, map[string]time.Duration{"1": 15, "2": 9}, 9, true},
		{"a new thread counts whole", map[string]time.Duration{"1": 10}, map[string]time.Duration{"1": 12, "3": 4}, 6, true},
		{"an exited thread loses time", map[string]time.Duration{"1": 10, "2": 5}, map[string]time.Duration{"1": 15}, 0, false},
		{"a reused thread ID ran less", map[string]time.Duration{"1": 10, "2": 50}, map[string]time.Duration{"1": 15, "2": 3}, 0, false},
	}
	for _, tt := range tests {
		got, ok := threadsDelta(tt.before, tt.after)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: threadsDelta = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// A block's CPU is the threads' run times unless the ticks say time was
// lost: a thread gone by the second reading, one that came and went between
// the readings, or no schedstat at all.
func TestBlockCPU(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name          string
		before, after map[string]time.Duration
		ticks         uint64
		want          time.Duration
		exact         bool
	}{
		{"threads account for it", map[string]time.Duration{"1": 0}, map[string]time.Duration{"1": 55 * ms}, 5, 55 * ms, true},
		{"a tick short at each end", map[string]time.Duration{"1": 0}, map[string]time.Duration{"1": 55 * ms}, 7, 55 * ms, true},
		{"an exited thread", map[string]time.Duration{"1": 0, "2": 0}, map[string]time.Duration{"1": 55 * ms}, 9, 90 * ms, false},
		{"a thread that came and went", map[string]time.Duration{"1": 0}, map[string]time.Duration{"1": 1 * ms}, 30, 300 * ms, false},
		{"no schedstat", map[string]time.Duration{}, map[string]time.Duration{}, 4, 40 * ms, false},
	}
	for _, tt := range tests {
		got, exact := blockCPU(tt.before, tt.after, tt.ticks, 100)
		if got != tt.want || exact != tt.exact {
			t.Errorf("%s: blockCPU = %v, %v; want %v, %v", tt.name, got, exact, tt.want, tt.exact)
		}
	}
}

// With an even number of runs the paired ratio is the mean of the middle
// two, not the lower one.
func TestPairedRatioEven(t *testing.T) {
	sub := []runResult{{cpuPer1000: 0.15}, {cpuPer1000: 0.30}}
	base := []runResult{{cpuPer1000: 1}, {cpuPer1000: 1}}
	if got := pairedRatio(sub, base, func(r runResult) float64 { return r.cpuPer1000 }); math.Abs(got-0.225) > 1e-12 {
		t.Errorf("pairedRatio of 0.15 and 0.30 = %v, want 0.225", got)
	}
}

// threadTimes of this process grows by about the CPU time a busy loop
// spends, which the tick count of /proc/self/stat measures too.
func TestThreadTimesOfSelf(t *testing.T) {
	pid := os.Getpid()
	before, err := threadTimes(pid)
	if err != nil {
		t.Skipf("no schedstat here: %v", err)
	}
	ticks0, err := cpuTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	x := 1
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		x = x*31 + 7
	}
	runtime.KeepAlive(x)
	after, err := threadTimes(pid)
	if err != nil {
		t.Fatal(err)
	}
	ticks1, err := cpuTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := threadsDelta(before, after)
	if !ok {
		t.Skip("a thread exited during the loop")
	}
	// Each tick count is up to a tick (10 ms) short.
	byTicks := time.Duration(ticks1-ticks0) * 10 * time.Millisecond
	if byTicks < 100*time.Millisecond {
		t.Skipf("the loop got %v of CPU in 300 ms: too busy a machine to compare", byTicks)
	}
	if d < byTicks-30*time.Millisecond || d > byTicks+30*time.Millisecond {
		t.Errorf("threads ran %v in a 300 ms busy loop; utime+stime says %v", d, byTicks)
	}
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"Name:\tx\nVmHWM:\t   30000 kB\nVmRSS:\t   21120 kB\nRssAnon: 1 kB\n", 21120 << 10, false},
		{"Name:\tx\n", 0, true},
		{"VmRSS:\t 12 MB\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseVmRSS(strings.NewReader(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseVmRSS(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i))
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0, 1}}
	for _, tt := range tests {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if got := medianFloat([]float64{3, 1, 2, 10}); got != 2 {
		t.Errorf("medianFloat = %v, want 2 (lower median)", got)
	}
}

// The collectors are held to the floor measured at scrape cadence; the
// hot-loop floor is printed for information and does not fail the check.
func TestPrintChecksFloor(t *testing.T) {
	for _, tc := range []struct {
		durSum float64 // seconds
		pass   bool
	}{{190e-6, true}, {210e-6, false}} {
		sums := map[string]summary{"ours": {durSum: tc.durSum, scrapeFloor: 100 * time.Microsecond}}
		var b strings.Builder
		ok := printChecks(&b, &report{}, sums, "ours", "ne3", 50*time.Microsecond)
		if ok != tc.pass {
			t.Errorf("dur sum %.0f µs against a cadence floor of 100 µs: pass %v, want %v\n%s", tc.durSum*1e6, ok, tc.pass, b.String())
		}
		if !strings.Contains(b.String(), "dur sum / hot-loop floor") || !strings.Contains(b.String(), "(info") {
			t.Errorf("hot-loop ratio not printed as information:\n%s", b.String())
		}
	}
}

// CPU and p50 are checked as the median of the runs' ratios, not as the
// ratio of each target's median: a machine that is slower in some runs
// slows both targets of those runs.
func TestPrintChecksPaired(t *testing.T) {
	run := func(cpu float64, p50 time.Duration) runResult {
		return runResult{cpuPer1000: cpu, p50: p50, rssBytes: 10 << 20}
	}
	// The machine runs at 1x, 2x and 1.5x the time: ours is 0.05x of ne3
	// in every run.
	rep := &report{results: map[string][]runResult{
		"ours": {run(0.5, 1*time.Millisecond), run(1.0, 2*time.Millisecond), run(0.75, 1500*time.Microsecond)},
		"ne3":  {run(10, 4*time.Millisecond), run(20, 8*time.Millisecond), run(15, 6*time.Millisecond)},
	}}
	if got := pairedRatio(rep.results["ours"], rep.results["ne3"], func(r runResult) float64 { return r.cpuPer1000 }); got != 0.05 {
		t.Errorf("pairedRatio = %v, want 0.05", got)
	}
	limits.cpu, limits.p50, limits.rss = 0.05, 0.25, 1
	defer func() { limits.cpu, limits.p50, limits.rss = 0.2, 0.3, 0.7 }()
	// Medians that say 0.04x, where every run says 0.05x: passes.
	sums := map[string]summary{"ours": {cpuPer1000: 0.6, p50: time.Millisecond, rssBytes: 1}, "ne3": {cpuPer1000: 15, p50: 6 * time.Millisecond, rssBytes: 1}}
	var b strings.Builder
	if !printChecks(&b, rep, sums, "ours", "ne3", 0) {
		t.Errorf("a subject at 0.05x in every run fails a 0.05x limit:\n%s", b.String())
	}
	// Above the limit in every run fails, whatever the medians say.
	for i := range rep.results["ours"] {
		rep.results["ours"][i].cpuPer1000 *= 1.1
	}
	b.Reset()
	if printChecks(&b, rep, sums, "ours", "ne3", 0) {
		t.Errorf("a subject at 0.055x in every run passes a 0.05x limit:\n%s", b.String())
	}
}
