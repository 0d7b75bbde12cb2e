// Package fastgzip compresses HTTP responses with gzip at BestSpeed.
//
// promhttp compresses at gzip's default level, which for this exporter's
// ~30 KB exposition costs more CPU than reading and parsing every kernel
// file: 0.66 ms a scrape against 0.25 ms at BestSpeed, for a body of 6.3 KB
// instead of 5.4 KB. Scrapes are frequent and local to the cluster, so CPU
// on every node matters more than a kilobyte on the wire.
package fastgzip

import (
	"compress/gzip"
	"net/http"
	"strings"
	"sync"
)

// writers are reused: a gzip.Writer holds ~800 KB of compressor state, too
// much to allocate per scrape.
var writers = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

type responseWriter struct {
	http.ResponseWriter
	zw *gzip.Writer
}

// Write compresses. A Content-Length the handler set counts uncompressed
// bytes, so it goes before the headers are sent.
func (w responseWriter) Write(b []byte) (int, error) {
	w.Header().Del("Content-Length")
	return w.zw.Write(b)
}

func (w responseWriter) WriteHeader(code int) {
	w.Header().Del("Content-Length")
	w.ResponseWriter.WriteHeader(code)
}

// Handler gzips h's responses for clients that accept gzip. h must not
// compress on its own (promhttp.HandlerOpts.DisableCompression).
func Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r.Header.Values("Accept-Encoding")) {
			h.ServeHTTP(w, r)
			return
		}
		zw := writers.Get().(*gzip.Writer)
		defer writers.Put(zw)
		zw.Reset(w)
		w.Header().Set("Content-Encoding", "gzip")
		h.ServeHTTP(responseWriter{w, zw}, r)
		zw.Close()
	})
}

// acceptsGzip reads Accept-Encoding lists such as "gzip", "deflate, gzip;q=1.0"
// or "gzip;q=0" (refused).
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") && strings.TrimSpace(coding) != "*" {
				continue
			}
			q := strings.ReplaceAll(params, " ", "")
			if q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
				continue
			}
			return true
		}
	}
	return false
}
