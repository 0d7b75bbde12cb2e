package fastgzip

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var body = strings.Repeat("memfrag_free_blocks{numa_node=\"0\",order=\"4\",zone=\"Normal\"} 473\n", 500)

var plain = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body))) // must not survive compression
	io.WriteString(w, body)
})

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler(plain))
	defer srv.Close()
	for _, tc := range []struct {
		accept string
		gzip   bool
	}{
		{"gzip", true}, {"deflate, gzip;q=1.0", true}, {"GZIP", true}, {"*", true},
		{"", false}, {"identity", false}, {"gzip;q=0", false}, {"gzip; q=0.0", false},
	} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if tc.accept != "" {
			req.Header.Set("Accept-Encoding", tc.accept)
		}
		// Go's transport would decompress transparently when it asked for
		// gzip itself; here the test asks, so it sees the raw body.
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = resp.Body
		if got := resp.Header.Get("Content-Encoding") == "gzip"; got != tc.gzip {
			t.Errorf("Accept-Encoding %q: gzipped %v, want %v", tc.accept, got, tc.gzip)
		}
		if tc.gzip {
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		b, err := io.ReadAll(r)
		resp.Body.Close()
		if err != nil || string(b) != body {
			t.Errorf("Accept-Encoding %q: body of %d bytes, err %v; want the original %d", tc.accept, len(b), err, len(body))
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("Accept-Encoding %q: no Vary header", tc.accept)
		}
	}
}

func TestConcurrent(t *testing.T) {
	h := Handler(plain)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", "/", nil)
				req.Header.Set("Accept-Encoding", "gzip")
				h.ServeHTTP(rec, req)
				zr, err := gzip.NewReader(rec.Body)
				if err != nil {
					t.Error(err)
					return
				}
				if b, _ := io.ReadAll(zr); string(b) != body {
					t.Error("corrupted body under concurrency")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkHandler(b *testing.B) {
	h := Handler(plain)
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

// The handler's status and headers survive the buffering, a body larger
// than one deflate block and an empty body round-trip, and Content-Length
// counts the compressed bytes.
func TestStatusSizesAndLength(t *testing.T) {
	big := strings.Repeat(body, 10) // ~330 KB, several stateless blocks
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"ok", 0, body}, {"big", 0, big}, {"empty", 0, ""}, {"error", http.StatusInternalServerError, "gathering failed\n"},
	} {
		h := Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-From-Handler", "yes")
			if tc.status != 0 {
				w.WriteHeader(tc.status)
			}
			io.WriteString(w, tc.body)
		}))
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		h.ServeHTTP(rec, req)
		want := tc.status
		if want == 0 {
			want = http.StatusOK
		}
		if rec.Code != want || rec.Header().Get("X-From-Handler") != "yes" {
			t.Errorf("%s: status %d, headers %v; want %d and the handler's headers", tc.name, rec.Code, rec.Header(), want)
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
			t.Errorf("%s: Content-Length %s for %d compressed bytes", tc.name, cl, rec.Body.Len())
		}
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := io.ReadAll(zr)
		if err != nil || string(b) != tc.body {
			t.Errorf("%s: got %d bytes (err %v), want %d", tc.name, len(b), err, len(tc.body))
		}
	}
}

// A status that allows no body is passed on without a gzip body.
func TestNoContent(t *testing.T) {
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 || rec.Header().Get("Content-Encoding") != "" {
		t.Errorf("status %d, %d body bytes, Content-Encoding %q", rec.Code, rec.Body.Len(), rec.Header().Get("Content-Encoding"))
	}
}

// An informational status goes out at once and the final response still
// follows; a HEAD request is passed on uncompressed, since a handler may
// write no body for it.
func TestInformationalAndHead(t *testing.T) {
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "text/plain")
		if r.Method != http.MethodHead {
			io.WriteString(w, body)
		}
	})))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	b, _ := io.ReadAll(zr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != body {
		t.Errorf("after 103: status %d, %d body bytes; want 200 and %d", resp.StatusCode, len(b), len(body))
	}
	req, _ = http.NewRequest("HEAD", srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("HEAD: status %d, Content-Encoding %q; want 200 and none", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
}
