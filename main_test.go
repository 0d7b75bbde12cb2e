package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/memfrag/memfrag_exporter/internal/livetest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary builds the exporter once for all end-to-end tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "memfrag-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "memfrag_exporter")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startExporter runs the binary and waits (bounded) until it answers.
func startExporter(t *testing.T, bin string, args ...string) (*exec.Cmd, string, *strings.Builder) {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, append([]string{"--web.listen-address=" + addr}, args...)...)
	logs := &strings.Builder{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/healthy")
		if err == nil {
			resp.Body.Close()
			return cmd, addr, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter did not answer within 10s: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitExit waits (bounded) for the exporter to exit cleanly after SIGTERM.
func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration, logs fmt.Stringer) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs)
		}
	case <-time.After(within):
		t.Fatalf("still running %v after SIGTERM\n%s", within, logs)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestEndToEnd starts the built binary on loopback against the seed's
// fragmented snapshot, scrapes it as Prometheus would, lints the exposition
// with promtool, and stops it with SIGTERM.
func TestEndToEnd(t *testing.T) {
	bin := buildBinary(t)
	root := "collector/testdata/seed-before"
	cmd, addr, logs := startExporter(t, bin, "--path.procfs="+root+"/proc", "--path.sysfs="+root+"/sys")

	code, body := get(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		`memfrag_unusable_free_index{numa_node="0",order="4",zone="Normal"} 0.996`,
		`memfrag_free_blocks{numa_node="0",order="0",zone="Normal"} 127146`,
		`memfrag_compaction_score{numa_node="0"} 98`,
		`memfrag_scrape_collector_success{collector="buddyinfo"} 1`,
		`memfrag_exporter_build_info{`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Every metric the exporter serves is documented in the README's table.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[1] == "TYPE" && strings.HasPrefix(f[2], "memfrag_") {
			if !strings.Contains(string(readme), "`"+f[2]+"`") && !strings.Contains(string(readme), "`"+f[2]+"{") {
				t.Errorf("README.md does not document %s", f[2])
			}
		}
	}
	if code, page := get(t, "http://"+addr+"/"); code != 200 || !strings.Contains(page, "/metrics") {
		t.Errorf("landing page: %d, links to /metrics: %v", code, strings.Contains(page, "/metrics"))
	}

	promtool, err := exec.LookPath("promtool")
	switch {
	case err == nil:
		c := exec.Command(promtool, "check", "metrics")
		c.Stdin = strings.NewReader(body)
		if out, err := c.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	case livetest.Required():
		t.Error("promtool not installed (Debian package prometheus); make test installs it")
	default:
		t.Log("promtool not installed: exposition not linted")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, 10*time.Second, logs)
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Errorf("no graceful stop logged:\n%s", logs)
	}
}

// TestWebConfigBasicAuth: --web.config.file protects every path.
func TestWebConfigBasicAuth(t *testing.T) {
	bin := buildBinary(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "basic_auth_users:\n  prom: %s\n", hash), 0o600); err != nil {
		t.Fatal(err)
	}
	root := "collector/testdata/x86-vm"
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--web.config.file="+cfg, "--path.procfs="+root+"/proc", "--path.sysfs="+root+"/sys")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("/metrics without credentials: %d, want 401", resp.StatusCode)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("exporter did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.SetBasicAuth("prom", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	found := false
	for sc.Scan() {
		found = found || strings.HasPrefix(sc.Text(), "memfrag_free_blocks{")
	}
	if resp.StatusCode != 200 || !found {
		t.Fatalf("/metrics with credentials: %d, memfrag_free_blocks present: %v", resp.StatusCode, found)
	}
}

func TestBadFlagsExitNonZero(t *testing.T) {
	if code := run([]string{"--no-such-flag"}); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code := run([]string{"--log.level=loud"}); code != 2 {
		t.Errorf("bad log level: exit %d, want 2", code)
	}
	if code := run([]string{"--runtime.gogc=abc"}); code != 2 {
		t.Errorf("bad --runtime.gogc: exit %d, want 2", code)
	}
	if code := run([]string{"--runtime.gomaxprocs=0"}); code != 2 {
		t.Errorf("--runtime.gomaxprocs=0: exit %d, want 2", code)
	}
}
