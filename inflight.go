package main

import (
	"net/http"
)

// landingPageInFlight bounds landing-page renders in flight. A page is about
// 46 KB and people look at it one at a time.
const landingPageInFlight = 8

// limitInFlight answers 503 (and closes the connection) once n requests are
// already in next, counting the time their responses take to be written. A
// client that pipelines requests and never reads the replies otherwise keeps
// one rendered response per connection blocked in a write for the whole
// write timeout: 500 such connections took the exporter past 64 MiB. n <= 0
// means no bound.
func limitInFlight(next http.Handler, n int) http.Handler {
	if n <= 0 {
		return next
	}
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
		default:
			w.Header().Set("Connection", "close")
			http.Error(w, "Too many requests in flight; try again later.", http.StatusServiceUnavailable)
			return
		}
		defer func() { <-slots }()
		next.ServeHTTP(w, r)
	})
}
