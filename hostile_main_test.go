package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The hostile-client suite against the built binary on loopback: floods of
// connections a stranger can open without a token, with the exporter's RSS
// measured (VmRSS) and a legitimate webhook timed during the attack. The
// figures are logged (go test -v -run TestHostile .); the bounds asserted
// are generous, since the machine running the test may be busy.

// rssLimit is the bound asserted: the remediation DaemonSet's memory limit
// is 64 MiB, and the exporter must stay well inside it.
const rssLimit = 48 << 20

const hostileToken = "hostile-test-token"

// raiseNoFile lets the test (and the exporter it starts, which inherits the
// limit) hold tens of thousands of sockets.
func raiseNoFile(t *testing.T, want uint64) uint64 {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < want {
		lim.Cur = want
		if lim.Max < want {
			lim.Max = want
		}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
			lim.Cur = lim.Max
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		}
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

func vmRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// startRemediating runs the binary with remediation on (dry run, a token,
// the seed's fragmented snapshot) and returns it with its address.
func startRemediating(t *testing.T, extra ...string) (*exec.Cmd, string, *strings.Builder) {
	t.Helper()
	bin := buildBinary(t)
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(hostileToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--path.procfs=collector/testdata/seed-before/proc", "--path.sysfs=" + dir,
		"--remediate.enable", "--remediate.dry-run", "--remediate.token-file=" + tok, "--remediate.node-name=node-a"}, extra...)
	return startExporter(t, bin, args...)
}

func webhookBody(fingerprint string) string {
	return `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"MemFragHighOrderMemoryLow","node":"node-a","remediate":"drop_caches"},"startsAt":"2026-03-01T11:00:00Z","fingerprint":"` + fingerprint + `"}]}`
}

// webhook posts one alert as Alertmanager would (a fresh connection, 10 s
// timeout) and returns the status, the reply and how long it took.
func webhook(addr, fingerprint string, auth func(*http.Request)) (int, string, time.Duration, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/remediate", strings.NewReader(webhookBody(fingerprint)))
	req.Header.Set("Content-Type", "application/json")
	auth(req)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", time.Since(start), err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), time.Since(start), nil
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// flood holds conns open connections, each made by open; when the server
// closes one, it is opened again until stop.
type flood struct {
	mu     sync.Mutex
	conns  []net.Conn
	opened int
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startFlood(addr string, n, workers int, open func(net.Conn)) *flood {
	return startFloodWith(&net.Dialer{Timeout: 2 * time.Second}, addr, n, workers, open)
}

// startFloodWith is startFlood with the attacker's own dialer (socket
// options set before connecting).
func startFloodWith(d *net.Dialer, addr string, n, workers int, open func(net.Conn)) *flood {
	f := &flood{stop: make(chan struct{})}
	per := n / workers
	for range workers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for range per {
				select {
				case <-f.stop:
					return
				default:
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				f.mu.Lock()
				f.conns = append(f.conns, c)
				f.opened++
				f.mu.Unlock()
				open(c)
			}
		}()
	}
	return f
}

func (f *flood) wait() { f.wg.Wait() }

func (f *flood) end() {
	close(f.stop)
	f.wg.Wait()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
}

// openGauge reads memfrag_http_open_connections.
func openGauge(t *testing.T, addr string) string {
	t.Helper()
	_, body := get(t, "http://"+addr+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "memfrag_http_open_connections ") {
			return strings.Fields(line)[1]
		}
	}
	return "?"
}

// recovery is how long after a flood ends until /-/healthy answers.
func recovery(addr string) time.Duration {
	start := time.Now()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for time.Since(start) < 5*time.Second {
		resp, err := client.Get("http://" + addr + "/-/healthy")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestHostileFloods(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the binary with connections")
	}
	nofile := raiseNoFile(t, 40000)
	cmd, addr, logs := startRemediating(t)
	pid := cmd.Process.Pid
	base := vmRSS(t, pid)
	t.Logf("RSS at rest: %.1f MiB (open files limit %d)", float64(base)/(1<<20), nofile)

	bigHeader := []byte("POST /remediate HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("a", 1000)+"\r\n", 1000))
	idleN := min(15000, int(nofile)-3000)
	for _, sc := range []struct {
		name string
		n    int
		open func(net.Conn)
	}{
		{"60 connections x 1 MB of headers, never finished", 60, func(c net.Conn) {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			c.Write(bigHeader) // the server stops reading at its bound
		}},
		{"5000 slow-header connections", 5000, func(c net.Conn) {
			io.WriteString(c, "POST /remediate HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		}},
		{fmt.Sprintf("%d idle keep-alive connections", idleN), idleN, func(c net.Conn) {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(c)
			if resp, err := http.ReadResponse(br, nil); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			c.SetDeadline(time.Time{})
		}},
	} {
		start := time.Now()
		f := startFlood(addr, sc.n, 20, sc.open)
		var peak uint64
		done := make(chan struct{})
		go func() { f.wait(); close(done) }()
	sample:
		for {
			peak = max(peak, vmRSS(t, pid))
			select {
			case <-done:
				break sample
			case <-time.After(20 * time.Millisecond):
			}
		}
		time.Sleep(200 * time.Millisecond)
		peak = max(peak, vmRSS(t, pid))
		open := openGauge(t, addr)
		f.end()
		rec := recovery(addr)
		t.Logf("%s (%d opened in %v): RSS peak %.1f MiB, server holds %s connections; serves again %v after the flood",
			sc.name, f.opened, time.Since(start).Round(time.Millisecond), float64(peak)/(1<<20), open, rec.Round(time.Millisecond))
		if peak > rssLimit {
			t.Errorf("%s: RSS %.1f MiB, want below %d MiB", sc.name, float64(peak)/(1<<20), rssLimit>>20)
		}
		if rec > time.Second {
			t.Errorf("%s: serving again only %v after the flood, want within 1s", sc.name, rec)
		}
	}

	// Alertmanager's webhook while 1,000 slow connections are held open
	// (reopened as the server closes them).
	slow := &flood{stop: make(chan struct{})}
	for range 20 {
		slow.wg.Add(1)
		go func() {
			defer slow.wg.Done()
			var mine []net.Conn
			defer func() {
				for _, c := range mine {
					c.Close()
				}
			}()
			buf := make([]byte, 1)
			for {
				select {
				case <-slow.stop:
					return
				default:
				}
				live := mine[:0]
				for _, c := range mine {
					c.SetReadDeadline(time.Now().Add(time.Microsecond))
					if _, err := c.Read(buf); err != nil && !os.IsTimeout(err) {
						c.Close()
						continue
					}
					live = append(live, c)
				}
				mine = live
				for len(mine) < 50 {
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						break
					}
					io.WriteString(c, "POST /remediate HTTP/1.1\r\nHost: x\r\nX-Slow: ")
					mine = append(mine, c)
					slow.mu.Lock()
					slow.opened++
					slow.mu.Unlock()
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)
	var lat []time.Duration
	for i := range 3 {
		code, body, d, err := webhook(addr, fmt.Sprintf("slow-%d", i), bearer(hostileToken))
		if err != nil || code != 200 || !strings.Contains(body, `"decisions"`) {
			t.Errorf("webhook %d during 1000 slow connections: %d %v %s", i, code, err, body)
		}
		lat = append(lat, d)
		time.Sleep(300 * time.Millisecond)
	}
	rss := vmRSS(t, pid)
	close(slow.stop)
	slow.wg.Wait()
	t.Logf("webhook during 1000 slow connections (%d opened): %v; RSS %.1f MiB", slow.opened, lat, float64(rss)/(1<<20))
	for _, d := range lat {
		if d > 2*time.Second {
			t.Errorf("webhook took %v during the slow flood, want within 2s", d)
		}
	}
	if t.Failed() {
		t.Logf("exporter log:\n%s", logs)
	}
}

// After SIGTERM the receiver takes no new action: a webhook whose body
// completes after the signal is answered shutting_down, and the exporter
// then stops.
func TestHostileSigtermStopsAccepting(t *testing.T) {
	cmd, addr, logs := startRemediating(t)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	body := webhookBody("after-sigterm")
	fmt.Fprintf(conn, "POST /remediate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		hostileToken, len(body), body[:10])
	time.Sleep(200 * time.Millisecond) // the request is in the handler, reading its body
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	io.WriteString(conn, body[10:])
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no reply: %v\n%s", err, logs)
	}
	reply, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(reply), `"reason":"shutting_down"`) {
		t.Errorf("webhook completed after SIGTERM: %d %s, want skipped shutting_down", resp.StatusCode, reply)
	}
	waitExit(t, cmd, 15*time.Second, logs)
	if strings.Contains(logs.String(), "remediation action finished") {
		t.Errorf("an action ran after SIGTERM:\n%s", logs)
	}
}

// Basic auth against bearer token under 200 concurrent requests with random
// credentials, each with 3 legitimate webhooks sent during the attack:
// exporter-toolkit checks every uncached password with bcrypt under one
// mutex, the bearer token is one SHA-256. The figures back the README's
// recommendation (bearer token, plus TLS client certificates, for
// /remediate; no basic_auth_users on a remediating exporter).
func TestHostileAuthFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the binary with requests")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("legit-password"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "basic_auth_users:\n  alertmanager: %s\n", hash), 0o600); err != nil {
		t.Fatal(err)
	}
	basicRandom := func(r *http.Request) { r.SetBasicAuth("alertmanager", randomHex()) }
	basicLegit := func(r *http.Request) { r.SetBasicAuth("alertmanager", "legit-password") }
	bearerRandom := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+randomHex()) }
	for _, tc := range []struct {
		name          string
		args          []string
		attack, legit func(*http.Request)
		assert        bool
	}{
		{"basic auth (bcrypt cost 10)", []string{"--web.config.file=" + cfg, "--remediate.allow-unauthenticated"}, basicRandom, basicLegit, false},
		{"bearer token", nil, bearerRandom, bearer(hostileToken), true},
	} {
		var cmd *exec.Cmd
		var addr string
		if tc.args != nil {
			bin := buildBinary(t)
			dir := t.TempDir()
			var logs *strings.Builder
			cmd, addr, logs = startExporter(t, bin, append([]string{"--path.procfs=collector/testdata/seed-before/proc", "--path.sysfs=" + dir,
				"--remediate.enable", "--remediate.dry-run", "--remediate.node-name=node-a"}, tc.args...)...)
			if !strings.Contains(logs.String(), "basic_auth_users in --web.config.file also guard /remediate") {
				t.Errorf("no warning about basic auth in front of /remediate:\n%s", logs)
			}
		} else {
			cmd, addr, _ = startRemediating(t)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var attacks, answered int64
		var mu sync.Mutex
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, _, _, err := webhook(addr, "attack", tc.attack)
					mu.Lock()
					attacks++
					if err == nil && code == 401 {
						answered++
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(500 * time.Millisecond)
		var results []string
		var worst time.Duration
		failed := 0
		for i := range 3 {
			code, _, d, err := webhook(addr, fmt.Sprintf("legit-%d", i), tc.legit)
			if err != nil || code != 200 {
				failed++
				results = append(results, fmt.Sprintf("%v (%d %v)", d.Round(time.Millisecond), code, errShort(err)))
			} else {
				results = append(results, d.Round(time.Millisecond).String())
			}
			worst = max(worst, d)
		}
		close(stop)
		wg.Wait()
		cpu := procCPU(t, cmd.Process.Pid)
		t.Logf("%s: 200 concurrent random credentials (%d requests, %d answered 401): legitimate webhooks %s; %d of 3 failed; exporter CPU %v",
			tc.name, attacks, answered, strings.Join(results, ", "), failed, cpu)
		if tc.assert && (failed > 0 || worst > 5*time.Second) {
			t.Errorf("%s: legitimate webhooks %v under the flood, want all 200 within 5s", tc.name, results)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
}

func errShort(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

func randomHex() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// procCPU is the user+system CPU time the process used so far.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
}

// A web config that breaks while the exporter runs: exporter-toolkit
// re-reads it on every request and answers 500 to every path, probes
// included (so the kubelet restarts the pod, which then refuses to start
// with the broken file); /remediate acts on nothing meanwhile. Fixing the
// file brings the exporter back without a restart.
func TestHostileWebConfigBreaksAtRuntime(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, []byte("http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr, logs := startRemediating(t, "--web.config.file="+cfg)
	if code, _, _, err := webhook(addr, "before", bearer(hostileToken)); err != nil || code != 200 {
		t.Fatalf("webhook with a good web config: %d %v", code, err)
	}
	if err := os.WriteFile(cfg, []byte("basic_auth_users: [this is: not valid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, _, err := webhook(addr, "broken", bearer(hostileToken))
	hcode, _ := get(t, "http://"+addr+"/-/healthy")
	if err != nil || code != 500 || hcode != 500 {
		t.Errorf("broken web config: /remediate %d %v, /-/healthy %d; want 500 for both (documented)", code, err, hcode)
	}
	if strings.Contains(logs.String(), "fingerprint=broken") {
		t.Errorf("a webhook was decided behind a broken web config:\n%s", logs)
	}
	// A restart with the broken file fails at once, with the reason.
	out, err := exec.Command(buildBinary(t), "--web.listen-address="+freeAddr(t), "--web.config.file="+cfg,
		"--path.procfs=collector/testdata/seed-before/proc").CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("yaml")) {
		t.Errorf("start with a broken web config: %v\n%s", err, out)
	}
	if err := os.WriteFile(cfg, []byte("http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := webhook(addr, "after", bearer(hostileToken)); err != nil || code != 200 {
		t.Errorf("webhook after the web config was fixed: %d %v", code, err)
	}
}

// Connections a stranger holds inside a handler, beyond the bound: a body
// trickled to the landing page (the server waits for it before replying;
// replies never read hold a handler the same way, for the write timeout).
// Before, once 512 were held, every new connection was closed
// until the server's read and write timeouts (30 s, 60 s) let them go, so
// the stranger kept Alertmanager out for good by reopening them. Now the
// one longest in its request makes room, and the webhook gets through.
func TestHostileHeldHandlers(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the binary with connections")
	}
	raiseNoFile(t, 4000)
	cmd, addr, logs := startRemediating(t)
	attacks := []struct {
		name string
		open func(net.Conn)
	}{
		{"trickled body to /", func(c net.Conn) {
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx")
		}},
	}
	for _, a := range attacks {
		f := startFlood(addr, 600, 4, a.open)
		f.wait()
		time.Sleep(time.Second) // the requests are inside their handlers
		for i := range 3 {
			code, body, took, err := webhook(addr, fmt.Sprintf("held-%s-%d", a.name, i), bearer(hostileToken))
			t.Logf("%s, 600 held: webhook %d in %v (RSS %d MiB)", a.name, code, took, vmRSS(t, cmd.Process.Pid)>>20)
			if err != nil || code != http.StatusOK {
				t.Errorf("%s: webhook while strangers hold handlers: %d %v %s", a.name, code, err, body)
			}
		}
		f.end()
	}
	if t.Failed() {
		t.Log(logs.String())
	}
}

// TestHostilePipelinedSlowReaders: strangers pipeline requests for the
// landing page and the metrics and never read the replies, through a 1 KiB
// receive buffer, so every response they get stays blocked in its write for
// the whole write timeout. The in-flight bounds of / and /metrics keep one
// rendered response per slot, not per connection, and the webhook still
// gets through.
func TestHostilePipelinedSlowReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("floods the binary with connections")
	}
	raiseNoFile(t, 2000)
	cmd, addr, logs := startRemediating(t)
	tinyRcvbuf := &net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for _, path := range []string{"/", "/metrics"} {
		req := strings.Repeat("GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n", 60)
		f := startFloodWith(tinyRcvbuf, addr, 500, 4, func(c net.Conn) { io.WriteString(c, req) })
		f.wait()
		var peak uint64
		for range 15 { // 3 s: the replies pile up behind the unread ones
			peak = max(peak, vmRSS(t, cmd.Process.Pid))
			time.Sleep(200 * time.Millisecond)
		}
		code, body, took, err := webhook(addr, "pipelined-"+path, bearer(hostileToken))
		t.Logf("500 connections pipelining 60 x GET %s, replies unread: peak RSS %.1f MiB; webhook %d in %v", path, float64(peak)/(1<<20), code, took)
		if err != nil || code != http.StatusOK {
			t.Errorf("GET %s flood: webhook %d %v %s", path, code, err, body)
		}
		if peak > 48<<20 {
			t.Errorf("GET %s flood: peak RSS %d MiB, want below 48 MiB (the DaemonSet's limit is 64 MiB)", path, peak>>20)
		}
		f.end()
	}
	if t.Failed() {
		t.Log(logs.String())
	}
}
