package remediate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repeatReader yields one byte forever without allocating.
type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// rawPost sends a request head over TCP, streams body in the background
// (ignoring errors: the server may close early), and returns the status line.
func rawPost(t *testing.T, addr, head string, body io.Reader) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // guards the test only
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	go io.Copy(conn, body)
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return strings.TrimSpace(status)
}

// chunked frames a reader as an HTTP/1.1 chunked body of 32 KiB chunks.
func chunked(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				if _, werr := fmt.Fprintf(pw, "%x\r\n%s\r\n", n, buf[:n]); werr != nil {
					pw.CloseWithError(werr)
					return
				}
			}
			if err != nil {
				io.WriteString(pw, "0\r\n\r\n")
				pw.Close()
				return
			}
		}
	}()
	return pr
}

func TestHostileInputs(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.DryRun = true
	r := newReceiver(t, cfg)
	srv := httptest.NewServer(r)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	const hundredMiB = 100 << 20

	t.Run("100 MiB body with Content-Length", func(t *testing.T) {
		allocs := totalAlloc()
		status := rawPost(t, addr, fmt.Sprintf("POST /remediate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", hundredMiB),
			io.LimitReader(repeatReader('['), hundredMiB))
		if !strings.HasPrefix(status, "HTTP/1.1 413") {
			t.Fatalf("status %q, want 413", status)
		}
		if grew := totalAlloc() - allocs; grew > 16<<20 {
			t.Errorf("allocated %d MiB answering it", grew>>20)
		}
	})
	t.Run("100 MiB chunked body", func(t *testing.T) {
		allocs := totalAlloc()
		status := rawPost(t, addr, "POST /remediate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
			chunked(io.LimitReader(repeatReader(' '), hundredMiB)))
		if !strings.HasPrefix(status, "HTTP/1.1 413") {
			t.Fatalf("status %q, want 413", status)
		}
		if grew := totalAlloc() - allocs; grew > 32<<20 {
			t.Errorf("allocated %d MiB answering it", grew>>20)
		}
	})

	post := func(t *testing.T, body string) (int, []byte) {
		t.Helper()
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !json.Valid(b) {
			t.Errorf("reply is not JSON: %q", b)
		}
		return resp.StatusCode, b
	}
	t.Run("deeply nested JSON", func(t *testing.T) {
		n := 500_000
		body := `{"version":"4","alerts":[],"x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
		if code, b := post(t, body); code != 400 {
			t.Fatalf("status %d (%s), want 400", code, b)
		}
	})
	t.Run("deeply nested labels", func(t *testing.T) {
		body := `{"version":"4","alerts":[{"status":"firing","labels":` + strings.Repeat(`{"a":`, 100_000) + `"x"` + strings.Repeat("}", 100_000) + `}]}`
		if code, b := post(t, body); code != 400 {
			t.Fatalf("status %d (%s), want 400", code, b)
		}
	})
	t.Run("numa_node and NUL values", func(t *testing.T) {
		var alerts []map[string]string
		for _, v := range []string{"../../..", "-1", "1e9", "0x1", "1\x00", "", " 0", "00", "99999999999999999999", "%00"} {
			alerts = append(alerts, alertFor("compact", "n"+v, "numa_node", v))
		}
		alerts = append(alerts,
			alertFor("compact\x00", "nul1"),
			map[string]string{"alertname": "a\x00b", "remediate": "compact", "node": testNode + "\x00", "fingerprint": "nul2"},
			map[string]string{"alertname": "x", "remediate": "compact", "instance": "\x00:19710", "fingerprint": "nul3"},
			alertFor("compact", "nul4", "zone", "Normal\x00"),
		)
		code, b := post(t, payload(alerts...))
		if code != 200 {
			t.Fatalf("status %d (%s)", code, b)
		}
		var rep reply
		json.Unmarshal(b, &rep)
		want := []string{"invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "invalid",
			"invalid", "other_host", "other_host", "invalid"}
		for i, d := range rep.Decisions {
			if d.Decision != decisionSkipped || d.Reason != want[i] {
				t.Errorf("alert %d (%q): %s %s, want skipped %s", i, d.Fingerprint, d.Decision, d.Reason, want[i])
			}
		}
		if w := tr.written(t); len(w) != 0 {
			t.Errorf("written %q", w)
		}
	})
	t.Run("10,000 alerts in one payload", func(t *testing.T) {
		var sb strings.Builder
		sb.WriteString(`{"version":"4","alerts":[`)
		for i := range 10_000 {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"status":"firing","labels":{"remediate":"compact","node":%q},"fingerprint":"%d"}`, testNode, i)
		}
		sb.WriteString(`]}`)
		if sb.Len() > DefaultMaxBodyBytes {
			t.Fatalf("payload of %d bytes does not test the decoder", sb.Len())
		}
		start := time.Now()
		code, b := post(t, sb.String())
		took := time.Since(start)
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		var rep reply
		json.Unmarshal(b, &rep)
		counts := map[string]int{}
		for _, d := range rep.Decisions {
			counts[d.Decision+":"+d.Reason]++
		}
		if len(rep.Decisions) != 10_000 || counts["accepted:"] > 1 {
			t.Fatalf("%d decisions %v, want 10000 with at most one accepted", len(rep.Decisions), counts)
		}
		t.Logf("10,000 alerts (%d KiB) answered in %v: %v", sb.Len()>>10, took, counts)
	})
}

func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}
