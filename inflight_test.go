package main

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestLimitInFlight holds n requests inside the handler and checks that the
// next one is refused with 503 and Connection: close, and that a slot frees
// again once a held request ends.
func TestLimitInFlight(t *testing.T) {
	const n = 3
	release := make(chan struct{})
	var entered sync.WaitGroup
	h := limitInFlight(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered.Done()
			<-release
		}
		w.Write([]byte("ok"))
	}), n)
	var done sync.WaitGroup
	entered.Add(n)
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/hold", nil))
		}()
	}
	entered.Wait()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Connection") != "close" {
		t.Fatalf("request over the bound: %d, Connection %q; want 503, close", rec.Code, rec.Header().Get("Connection"))
	}
	close(release)
	done.Wait()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("after the held requests ended: %d, want 200", rec.Code)
	}
	mux := http.NewServeMux()
	if limitInFlight(mux, 0) != http.Handler(mux) {
		t.Error("n = 0 must leave the handler unbounded")
	}
}
