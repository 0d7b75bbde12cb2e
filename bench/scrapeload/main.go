// Command scrapeload loads several Prometheus exporters side by side with
// the same client and prints how each one fares: scrape latency, CPU per
// 1,000 scrapes, resident memory, series count, and the time the exporter's
// collectors say they spent (the *_scrape_collector_duration_seconds sum)
// next to the kernel read floor for the files they read: hot (the files read
// back to back, thousands of times) and at scrape cadence (passes made right
// after a scrape of the subject, in the same run, as cold as the reads inside
// a scrape; the scrapes they follow are extra ones, neither timed nor
// counted).
//
// It is the measuring half of bench/compare.sh, a developer tool; nothing in
// CI runs it. Besides the standard library it uses only internal/procfile,
// to read the floor files as the exporter does.
//
// Every run scrapes each target n times over one keep-alive connection with
// Accept-Encoding: gzip, the targets taking turns in blocks of 20 scrapes so
// that background load hits them alike; the reported figure is the median
// over runs. CPU is the run time of the process's threads in nanoseconds
// (/proc/<pid>/task/*/schedstat); a block of scrapes in which a thread
// exits is counted from utime+stime in /proc/<pid>/stat instead (blockCPU),
// whose clock ticks (10 ms) are as long as 15 scrapes of a fast exporter. Memory
// is VmRSS in /proc/<pid>/status after the load.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptrace"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// target is one exporter under load.
type target struct {
	name string
	url  string
	pid  int
}

type targetList []target

func (l *targetList) String() string { return fmt.Sprint(*l) }

// Set parses name=url@pid.
func (l *targetList) Set(s string) error {
	t, err := parseTarget(s)
	if err != nil {
		return err
	}
	*l = append(*l, t)
	return nil
}

func parseTarget(s string) (target, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return target{}, fmt.Errorf("target %q: want name=url@pid", s)
	}
	i := strings.LastIndexByte(rest, '@')
	if i < 0 {
		return target{}, fmt.Errorf("target %q: want name=url@pid", s)
	}
	pid, err := strconv.Atoi(rest[i+1:])
	if err != nil || pid <= 0 {
		return target{}, fmt.Errorf("target %q: bad pid %q", s, rest[i+1:])
	}
	if !strings.HasPrefix(rest[:i], "http://") {
		return target{}, fmt.Errorf("target %q: url must be http://", s)
	}
	return target{name: name, url: rest[:i], pid: pid}, nil
}

type config struct {
	targets   targetList
	n, runs   int
	warmup    int
	block     int
	baseline  string
	subject   string
	also      string
	floor     []string
	floorIter int
	clkTck    float64
	timeout   time.Duration
	verbose   bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scrapeload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var floor string
	fs.Var(&cfg.targets, "target", "exporter to load, name=http://host:port/metrics@pid (repeatable)")
	fs.IntVar(&cfg.n, "n", 2000, "scrapes per target per run")
	fs.IntVar(&cfg.runs, "runs", 5, "runs; figures are the median over runs")
	fs.IntVar(&cfg.warmup, "warmup", 50, "unmeasured scrapes per target before each run")
	fs.IntVar(&cfg.block, "block", 20, "scrapes a target gets before the next target's turn within a run: short turns keep the targets under the same conditions, and thread run times are exact for any number")
	fs.StringVar(&cfg.baseline, "baseline", "", "target the subject is compared with")
	fs.StringVar(&cfg.subject, "subject", "", "target checked against the targets (ours)")
	fs.StringVar(&cfg.also, "also", "", "another target checked like the subject, for information (does not change the exit status)")
	fs.StringVar(&floor, "floor", "", "comma-separated files the subject reads per scrape; their pread time is the kernel floor")
	fs.IntVar(&cfg.floorIter, "floor-iterations", 2000, "floor reads per run")
	fs.Float64Var(&cfg.clkTck, "clk-tck", 100, "kernel clock ticks per second (getconf CLK_TCK)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "timeout of one scrape")
	fs.BoolVar(&cfg.verbose, "v", false, "print every run")
	fs.Float64Var(&limits.p50, "limit-p50", limits.p50, "largest passing ratio subject/baseline of the p50 latency")
	fs.Float64Var(&limits.cpu, "limit-cpu", limits.cpu, "largest passing ratio of the CPU per 1,000 scrapes")
	fs.Float64Var(&limits.rss, "limit-rss", limits.rss, "largest passing ratio of the RSS after the load")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if floor != "" {
		cfg.floor = strings.Split(floor, ",")
	}
	if len(cfg.targets) == 0 || cfg.n < 1 || cfg.runs < 1 || cfg.block < 1 || cfg.clkTck <= 0 {
		fmt.Fprintln(stderr, "scrapeload: need at least one -target, -n >= 1, -runs >= 1, -block >= 1")
		return 2
	}
	rep, err := measure(cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "scrapeload:", err)
		return 1
	}
	if !rep.print(stdout, cfg) {
		return 1
	}
	return 0
}

// runResult is what one run of n scrapes against one target gave.
type runResult struct {
	p50, p99   time.Duration
	cpuPer1000 float64 // CPU seconds the exporter process spent per 1,000 scrapes
	tickBlocks int     // blocks of scrapes whose CPU came from clock ticks, not thread run times
	rssBytes   uint64  // VmRSS after the run
	series     int     // samples in the last scrape
	wireBytes  int     // compressed size of the last scrape
	durSum     float64 // median over scrapes of the summed collector durations, seconds
	newConns   int     // connections dialled; 1 means keep-alive held
	// scrapeFloor is the median of passes over the floor files, each made
	// right after one of the target's scrapes (extra scrapes after each
	// block, neither timed nor counted): the kernel read floor in the
	// conditions a scrape's reads meet, where the hot-loop floor reads the
	// files back to back thousands of times. Zero without -floor, and for
	// targets other than the subject and -also.
	scrapeFloor time.Duration
	phys        physFloor // the subject's, measured after the run
}

// floorResult is the kernel read floor of one run.
type floorResult struct {
	total   time.Duration            // median of one pass over every file
	perFile map[string]time.Duration // median per file
}

type report struct {
	results map[string][]runResult
	floors  []floorResult
}

func measure(cfg config, progress io.Writer) (*report, error) {
	rep := &report{results: map[string][]runResult{}}
	var fl *floorReader
	if len(cfg.floor) > 0 {
		var err error
		if fl, err = openFloor(cfg.floor); err != nil {
			return nil, err
		}
		defer fl.close()
	}
	for r := 0; r < cfg.runs; r++ {
		if fl != nil {
			f, err := fl.measure(cfg.floorIter)
			if err != nil {
				return nil, err
			}
			rep.floors = append(rep.floors, f)
		}
		res, err := loadRun(cfg, r, fl)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", r+1, err)
		}
		for i, t := range cfg.targets {
			rep.results[t.name] = append(rep.results[t.name], res[i])
			fmt.Fprintf(progress, "run %d/%d %-6s p50 %s cpu/1000 %.3fs\n", r+1, cfg.runs, t.name, fmtMs(res[i].p50), res[i].cpuPer1000)
			if res[i].tickBlocks > 0 {
				fmt.Fprintf(progress, "  %d blocks of %s counted in clock ticks: a thread exited during them\n", res[i].tickBlocks, t.name)
			}
		}
	}
	return rep, nil
}

// session is one target's share of a run: its own keep-alive connection and
// what its scrapes measured so far.
type session struct {
	t      target
	tr     *http.Transport
	client *http.Client
	ctx    context.Context
	sc     scraper
	lat    []time.Duration
	durs   []float64
	cpu    time.Duration
	res    runResult
	fl     *floorReader    // non-nil for the subject and -also: read the floor after each scrape
	floors []time.Duration // those reads
}

func newSession(t target, cfg config) *session {
	s := &session{t: t}
	s.tr = &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
	}
	s.client = &http.Client{Transport: s.tr, Timeout: cfg.timeout}
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			s.res.newConns++
		}
	}}
	s.ctx = httptrace.WithClientTrace(context.Background(), trace)
	s.lat = make([]time.Duration, 0, cfg.n)
	s.durs = make([]float64, 0, cfg.n)
	return s
}

// loadRun scrapes every target n times. The targets take turns in blocks of
// cfg.block scrapes (rotating who goes first), so a change in background load
// during the run hits all of them alike.
func loadRun(cfg config, run int, fl *floorReader) ([]runResult, error) {
	ss := make([]*session, len(cfg.targets))
	for i, t := range cfg.targets {
		ss[i] = newSession(t, cfg)
		if t.name == cfg.subject || t.name == cfg.also {
			ss[i].fl = fl
		}
		defer ss[i].tr.CloseIdleConnections()
		for j := 0; j < cfg.warmup; j++ {
			if _, err := ss[i].sc.scrape(ss[i].ctx, ss[i].client, t.url); err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
		}
		ss[i].res.newConns = 0
	}
	for b := 0; b*cfg.block < cfg.n; b++ {
		k := min(cfg.block, cfg.n-b*cfg.block)
		for i := range ss {
			s := ss[(i+b+run)%len(ss)]
			if err := s.block(k, cfg.clkTck); err != nil {
				return nil, fmt.Errorf("%s: %w", s.t.name, err)
			}
		}
	}
	out := make([]runResult, len(ss))
	for i, s := range ss {
		var err error
		if s.res.rssBytes, err = rss(s.t.pid); err != nil {
			return nil, err
		}
		s.res.p50, s.res.p99 = percentile(s.lat, 50), percentile(s.lat, 99)
		s.res.cpuPer1000 = s.cpu.Seconds() / float64(len(s.lat)) * 1000
		s.res.wireBytes = s.sc.raw.Len()
		s.res.durSum = medianFloat(s.durs)
		s.res.scrapeFloor = medianDur(s.floors)
		if s.t.name == cfg.subject {
			if _, err := s.sc.decode(); err != nil {
				return nil, err
			}
			body := s.sc.raw.Bytes()
			if s.sc.gzipped {
				body = s.sc.plain.Bytes()
			}
			if s.res.phys, err = measurePhysFloor(body, 300); err != nil {
				return nil, err
			}
		}
		out[i] = s.res
	}
	return out, nil
}

// block runs k scrapes and adds the CPU time they cost the process.
func (s *session) block(k int, clkTck float64) error {
	threads0, err := threadTimes(s.t.pid)
	if err != nil {
		return err
	}
	ticks0, err := cpuTicks(s.t.pid)
	if err != nil {
		return err
	}
	for i := 0; i < k; i++ {
		d, err := s.sc.scrape(s.ctx, s.client, s.t.url)
		if err != nil {
			return err
		}
		s.lat = append(s.lat, d)
		// Decoding happens after the clock stopped, between scrapes.
		st, err := s.sc.decode()
		if err != nil {
			return err
		}
		s.durs = append(s.durs, st.durSum)
		s.res.series = st.series
	}
	threads1, err := threadTimes(s.t.pid)
	if err != nil {
		return err
	}
	ticks1, err := cpuTicks(s.t.pid)
	if err != nil {
		return err
	}
	d, exact := blockCPU(threads0, threads1, ticks1-ticks0, clkTck)
	s.cpu += d
	if !exact {
		s.res.tickBlocks++
	}
	if s.fl == nil {
		return nil
	}
	// The floor at scrape cadence: a pass over the files right after a
	// scrape, as the exporter's own reads come right after its last scrape.
	// These scrapes are neither timed nor counted, so the passes cannot warm
	// the reads whose durations are reported.
	for i := 0; i < max(1, k/4); i++ {
		if _, err := s.sc.scrape(s.ctx, s.client, s.t.url); err != nil {
			return err
		}
		d, err := s.fl.pass()
		if err != nil {
			return err
		}
		s.floors = append(s.floors, d)
	}
	return nil
}

// scraper keeps its buffers across scrapes so the client's own garbage does
// not disturb the measurement more than it must.
type scraper struct {
	raw, plain bytes.Buffer
	gzipped    bool
	zr         *gzip.Reader
}

func (s *scraper) scrape(ctx context.Context, c *http.Client, url string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept-Encoding", "gzip")
	s.raw.Reset()
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = s.raw.ReadFrom(resp.Body)
	d := time.Since(start)
	resp.Body.Close()
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	s.gzipped = resp.Header.Get("Content-Encoding") == "gzip"
	return d, nil
}

// decode unpacks the last scrape and reads what it says about itself.
func (s *scraper) decode() (expositionStats, error) {
	body := s.raw.Bytes()
	if s.gzipped {
		var err error
		if s.zr == nil {
			s.zr, err = gzip.NewReader(bytes.NewReader(body))
		} else {
			err = s.zr.Reset(bytes.NewReader(body))
		}
		if err != nil {
			return expositionStats{}, fmt.Errorf("gunzip: %w", err)
		}
		s.plain.Reset()
		if _, err := s.plain.ReadFrom(s.zr); err != nil {
			return expositionStats{}, fmt.Errorf("gunzip: %w", err)
		}
		body = s.plain.Bytes()
	}
	return parseExposition(body)
}

// expositionStats is what scrapeload reads from a text exposition.
type expositionStats struct {
	series int     // sample lines
	durSum float64 // sum of every *_scrape_collector_duration_seconds sample
}

const durationSuffix = "_scrape_collector_duration_seconds"

// parseExposition counts samples in the Prometheus text format and sums the
// collectors' self-reported durations (memfrag_ and node_ alike).
func parseExposition(b []byte) (expositionStats, error) {
	var st expositionStats
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		st.series++
		name := line
		if i := bytes.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !bytes.HasSuffix(name, []byte(durationSuffix)) {
			continue
		}
		// name{labels} value [timestamp]: label values may hold spaces,
		// so take the value after the closing brace.
		rest := line[len(name):]
		if len(rest) > 0 && rest[0] == '{' {
			j := bytes.LastIndexByte(rest, '}')
			if j < 0 {
				return st, fmt.Errorf("malformed sample %q", line)
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(string(rest))
		if len(f) == 0 {
			return st, fmt.Errorf("sample without value %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return st, fmt.Errorf("sample %q: %w", line, err)
		}
		st.durSum += v
	}
	return st, nil
}

// threadTimes is the run time of each thread of pid, by thread ID: the
// first field of /proc/<pid>/task/<tid>/schedstat, in nanoseconds.
func threadTimes(pid int) (map[string]time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tids, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Duration, len(tids))
	for _, t := range tids {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if errors.Is(err, fs.ErrNotExist) {
			continue // exited since the directory was read
		}
		if err != nil {
			return nil, err
		}
		ns, err := parseSchedstat(b)
		if err != nil {
			return nil, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
		}
		out[t.Name()] = ns
	}
	return out, nil
}

// parseSchedstat reads the first field of a schedstat file: time on a CPU,
// in nanoseconds.
func parseSchedstat(b []byte) (time.Duration, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("empty")
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || ns < 0 {
		return 0, fmt.Errorf("run time %q is not a count of nanoseconds", f[0])
	}
	return time.Duration(ns), nil
}

// threadsDelta is the CPU time the threads spent between two readings; not
// ok when a thread of the first reading is gone from the second, as its
// time since the first reading is lost with it. Threads new in the second
// reading ran entirely between the two.
func threadsDelta(before, after map[string]time.Duration) (time.Duration, bool) {
	var d time.Duration
	for tid, t0 := range before {
		t1, ok := after[tid]
		if !ok || t1 < t0 {
			return 0, false
		}
		d += t1 - t0
	}
	for tid, t1 := range after {
		if _, ok := before[tid]; !ok {
			d += t1
		}
	}
	return d, true
}

// blockCPU is the CPU time a process spent between two readings of its
// threads' run times and a count of ticks of its utime+stime: the threads'
// when they account for it (exact), else the ticks'. Ticks keep the time of
// threads that exited; the run times lose a thread gone by the second
// reading, one that came and went between the two (the ticks then count
// more than two ticks beyond the run times, each reading being less than a
// tick short), and all of them where the kernel has no schedstat.
func blockCPU(before, after map[string]time.Duration, ticks uint64, clkTck float64) (_ time.Duration, exact bool) {
	byTicks := time.Duration(float64(ticks) / clkTck * float64(time.Second))
	d, ok := threadsDelta(before, after)
	if !ok || len(before) == 0 || byTicks > d+time.Duration(2/clkTck*float64(time.Second)) {
		return byTicks, false
	}
	return d, true
}

// cpuTicks is utime+stime of pid, in clock ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(b)
}

// parseStatTicks reads fields 14 and 15 of /proc/<pid>/stat. The command
// name (field 2) may contain spaces and parentheses, so count from the last
// closing parenthesis.
func parseStatTicks(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/<pid>/stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc/<pid>/stat: %d fields after comm", len(f))
	}
	u, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	s, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return u + s, nil
}

// rss is VmRSS of pid in bytes.
func rss(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseVmRSS(f)
}

func parseVmRSS(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS in status")
}

// floorReader reads the subject's files as the exporter does, through
// internal/procfile: one kept descriptor each, pread from offset 0 until a
// read returns nothing, into a buffer that grows until the file fits.
type floorReader struct {
	files []*procfile.File
}

// openFloor reads each file once, so an unreadable one fails here and the
// buffers have grown before anything is timed.
func openFloor(paths []string) (*floorReader, error) {
	fl := &floorReader{}
	for _, p := range paths {
		fl.files = append(fl.files, procfile.New(p))
		if err := fl.readAll(len(fl.files) - 1); err != nil {
			fl.close()
			return nil, err
		}
	}
	return fl, nil
}

func (fl *floorReader) close() {
	for _, f := range fl.files {
		f.Close()
	}
}

func discard([]byte) error { return nil }

func (fl *floorReader) readAll(i int) error {
	if err := fl.files[i].Do(discard); err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	return nil
}

// pass reads every file once and says how long that took.
func (fl *floorReader) pass() (time.Duration, error) {
	start := time.Now()
	for i := range fl.files {
		if err := fl.readAll(i); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

func (fl *floorReader) measure(iter int) (floorResult, error) {
	if iter < 1 {
		iter = 1
	}
	total := make([]time.Duration, iter)
	per := make([][]time.Duration, len(fl.files))
	for i := range per {
		per[i] = make([]time.Duration, iter)
	}
	for i := range fl.files { // grow the buffers outside the clock
		if err := fl.readAll(i); err != nil {
			return floorResult{}, err
		}
	}
	for it := 0; it < iter; it++ {
		start := time.Now()
		for i := range fl.files {
			t0 := time.Now()
			if err := fl.readAll(i); err != nil {
				return floorResult{}, err
			}
			per[i][it] = time.Since(t0)
		}
		total[it] = time.Since(start)
	}
	res := floorResult{total: percentile(total, 50), perFile: map[string]time.Duration{}}
	for i, f := range fl.files {
		res.perFile[f.Path()] = percentile(per[i], 50)
	}
	return res, nil
}

// percentile is the nearest-rank p-th percentile; it sorts d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	k := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[max(0, min(k, len(d)-1))]
}

func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[(len(s)-1)/2]
}

func medianDur(v []time.Duration) time.Duration {
	return percentile(append([]time.Duration(nil), v...), 50)
}

// summary is the median over runs of each figure of one target.
type summary struct {
	p50, p99    time.Duration
	cpuPer1000  float64
	rssBytes    uint64
	series      int
	wireBytes   int
	durSum      float64
	newConns    int
	scrapeFloor time.Duration
	phys        physFloor
}

func summarize(rs []runResult) summary {
	var s summary
	var p50, p99, floors []time.Duration
	var cpu, dur, rssv []float64
	for _, r := range rs {
		p50, p99 = append(p50, r.p50), append(p99, r.p99)
		floors = append(floors, r.scrapeFloor)
		cpu, dur = append(cpu, r.cpuPer1000), append(dur, r.durSum)
		rssv = append(rssv, float64(r.rssBytes))
		s.newConns = max(s.newConns, r.newConns)
	}
	s.p50, s.p99 = medianDur(p50), medianDur(p99)
	s.scrapeFloor = medianDur(floors)
	var rtt, enc, gz []time.Duration
	for _, r := range rs {
		rtt, enc, gz = append(rtt, r.phys.rtt), append(enc, r.phys.encode), append(gz, r.phys.gzip)
	}
	s.phys = physFloor{rtt: medianDur(rtt), encode: medianDur(enc), gzip: medianDur(gz)}
	s.cpuPer1000, s.durSum = medianFloat(cpu), medianFloat(dur)
	s.rssBytes = uint64(medianFloat(rssv))
	last := rs[len(rs)-1]
	s.series, s.wireBytes = last.series, last.wireBytes
	return s
}

// check is one target figure: subject/baseline (or subject/floor) against a
// maximum ratio.
type check struct {
	what        string
	ours, their float64 // medians over runs
	unit        string
	limit       float64
	paired      float64 // if not 0, the ratio checked: the median of the runs' ratios
}

func (c check) ratio() float64 {
	if c.paired != 0 {
		return c.paired
	}
	return c.ours / c.their
}
func (c check) pass() bool { return c.their > 0 && c.ratio() <= c.limit }

// pairedRatio is the median over runs (of an even number, the mean of the
// middle two) of subject's figure over baseline's
// in the same run. The targets take turns within a run, so a run's ratio
// is measured on the machine as it was then; a VM's speed changes between
// runs (by 1.5x within minutes on the one this was written on), and the
// ratio of medians taken apart can pair one run's baseline with another's
// subject.
func pairedRatio(sub, base []runResult, fig func(runResult) float64) float64 {
	var r []float64
	for i := range min(len(sub), len(base)) {
		if b := fig(base[i]); b > 0 {
			r = append(r, fig(sub[i])/b)
		}
	}
	if len(r) == 0 {
		return 0
	}
	sort.Float64s(r)
	return (r[(len(r)-1)/2] + r[len(r)/2]) / 2
}

// print writes the table and the checks; it reports whether every check
// passed.
func (rep *report) print(w io.Writer, cfg config) bool {
	sums := map[string]summary{}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "\n%d runs x %d keep-alive scrapes (gzip), median over runs\n", cfg.runs, cfg.n)
	fmt.Fprintln(tw, "target\tp50 ms\tp99 ms\tCPU s/1000\tRSS MiB\tseries\tgzip KiB\tcollector dur sum µs\tnew conns\t")
	for _, t := range cfg.targets {
		s := summarize(rep.results[t.name])
		sums[t.name] = s
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%.1f\t%d\t%.1f\t%.1f\t%d\t\n", t.name, fmtMs(s.p50), fmtMs(s.p99),
			s.cpuPer1000, float64(s.rssBytes)/(1<<20), s.series, float64(s.wireBytes)/1024, s.durSum*1e6, s.newConns)
	}
	tw.Flush()
	if cfg.verbose {
		fmt.Fprintln(w, "\nper run (p50 ms / p99 ms / CPU s per 1000 / RSS MiB / dur sum µs):")
		for _, t := range cfg.targets {
			for i, r := range rep.results[t.name] {
				fmt.Fprintf(w, "  %-6s run %d: %s / %s / %.3f / %.1f / %.1f\n", t.name, i+1, fmtMs(r.p50), fmtMs(r.p99),
					r.cpuPer1000, float64(r.rssBytes)/(1<<20), r.durSum*1e6)
			}
		}
	}
	var fl floorResult
	if len(rep.floors) > 0 {
		var tot []time.Duration
		per := map[string][]time.Duration{}
		for _, f := range rep.floors {
			tot = append(tot, f.total)
			for k, v := range f.perFile {
				per[k] = append(per[k], v)
			}
		}
		fl.total = medianDur(tot)
		fmt.Fprintf(w, "\nkernel read floor, hot loop (pread on kept descriptors until EOF, back to back, median): %.1f µs for %d files\n",
			us(fl.total), len(cfg.floor))
		for _, p := range cfg.floor {
			fmt.Fprintf(w, "  %-55s %7.1f µs\n", p, us(medianDur(per[p])))
		}
	}

	ok := printChecks(w, rep, sums, cfg.subject, cfg.baseline, fl.total)
	if cfg.also != "" {
		printChecks(w, rep, sums, cfg.also, cfg.baseline, fl.total)
	}
	if ok {
		fmt.Fprintln(w, "\nALL PASS")
	} else {
		fmt.Fprintln(w, "\nSOME FAIL")
	}
	return ok
}

// limits are the largest passing ratios subject/baseline: the default
// exposition's targets unless the flags say otherwise (compare.sh's
// scaling mode).
var limits = struct{ p50, cpu, rss float64 }{0.3, 0.2, 0.7}

// printChecks prints subject's figures against baseline's and the floor and
// reports whether all of them pass.
func printChecks(w io.Writer, rep *report, sums map[string]summary, subject, baseline string, floor time.Duration) bool {
	ok := true
	sub, hasSub := sums[subject]
	base, hasBase := sums[baseline]
	if hasSub && hasBase {
		subRuns, baseRuns := rep.results[subject], rep.results[baseline]
		fmt.Fprintf(w, "\nratios %s / %s (p50 and CPU: the median of the runs' ratios; in parentheses each target's median):\n", subject, baseline)
		fmt.Fprintf(w, "  %-28s %.3fx (info)\n", "scrape p99", float64(sub.p99)/float64(base.p99))
		fmt.Fprintf(w, "  %-28s %.3fx (info)\n", "series", float64(sub.series)/float64(base.series))
		for _, c := range []check{
			{"scrape p50", us(sub.p50), us(base.p50), "µs", limits.p50,
				pairedRatio(subRuns, baseRuns, func(r runResult) float64 { return float64(r.p50) })},
			{"CPU per 1000 scrapes", sub.cpuPer1000, base.cpuPer1000, "s", limits.cpu,
				pairedRatio(subRuns, baseRuns, func(r runResult) float64 { return r.cpuPer1000 })},
			{"RSS after load", float64(sub.rssBytes) / (1 << 20), float64(base.rssBytes) / (1 << 20), "MiB", limits.rss, 0},
		} {
			ok = printCheck(w, c) && ok
		}
	}
	if hasSub && floor > 0 {
		fmt.Fprintf(w, "%s collector durations (sum %.1f µs) vs the kernel read floor:\n", subject, sub.durSum*1e6)
		fmt.Fprintf(w, "  %-28s %.1f µs, %.2fx the hot-loop floor (the files read once after each scrape)\n",
			"floor at scrape cadence", us(sub.scrapeFloor), us(sub.scrapeFloor)/us(floor))
		fmt.Fprintf(w, "  %-28s %.2fx (info: no read inside a scrape is that warm)\n",
			"dur sum / hot-loop floor", sub.durSum*1e6/us(floor))
		ok = printCheck(w, check{"dur sum / cadence floor", sub.durSum * 1e6, us(sub.scrapeFloor), "µs", 2, 0}) && ok
	}
	if hasSub && sub.phys.rtt > 0 {
		sub.phys.print(w, subject, sub.p50, sub.scrapeFloor)
	}
	return ok
}

func printCheck(w io.Writer, c check) bool {
	verdict := "FAIL"
	if c.pass() {
		verdict = "PASS"
	}
	fmt.Fprintf(w, "  %-28s %.3fx  (%.3g vs %.3g %s, limit %.2fx)  %s\n", c.what, c.ratio(), c.ours, c.their, c.unit, c.limit, verdict)
	return c.pass()
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func fmtMs(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}
