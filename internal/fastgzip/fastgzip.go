// Package fastgzip gzips HTTP responses cheaply, in CPU and in memory.
//
// promhttp compresses at gzip's default level with compress/gzip, whose
// writer holds ~1.2 MB of compressor state: for this exporter's ~30 KB
// exposition that is most of the live heap, and the compression costs more
// CPU than reading and parsing every kernel file. Handler instead buffers
// the response and compresses it in one piece with an encoder made for
// exposition text (see encoder), whose state is an 80 KiB table and token
// buffer.
package fastgzip

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// maxPooled bounds the buffers kept for reuse, so one huge response does not
// pin its buffers for the life of the process.
const maxPooled = 1 << 20

type buffers struct {
	plain bytes.Buffer
	gz    []byte
	enc   encoder
}

var pool = sync.Pool{New: func() any { return new(buffers) }}

// responseWriter holds the handler's response until it returns: its status
// and its body, which is compressed as a whole.
type responseWriter struct {
	http.ResponseWriter
	buf    *bytes.Buffer
	status int
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.buf.Write(b)
}

func (w *responseWriter) WriteHeader(code int) {
	switch {
	case code >= 100 && code < 200:
		w.ResponseWriter.WriteHeader(code) // informational: sent now, as net/http would
	case w.status == 0:
		w.status = code
	}
}

// Handler gzips h's responses for clients that accept gzip. h must not
// compress on its own (promhttp.HandlerOpts.DisableCompression) and must not
// stream: the response is sent when h returns.
func Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		// HEAD is passed on: a handler may write no body for it, and the
		// length of gzipped nothing would be a wrong Content-Length.
		if r.Method == http.MethodHead || !acceptsGzip(r.Header.Values("Accept-Encoding")) {
			h.ServeHTTP(w, r)
			return
		}
		b := pool.Get().(*buffers)
		defer func() {
			if b.plain.Cap() <= maxPooled && cap(b.gz) <= maxPooled {
				b.plain.Reset()
				b.gz = b.gz[:0]
				pool.Put(b)
			}
		}()
		rw := &responseWriter{ResponseWriter: w, buf: &b.plain}
		h.ServeHTTP(rw, r)
		switch {
		case rw.status == 0:
			rw.status = http.StatusOK
		case rw.status == http.StatusNoContent || rw.status == http.StatusNotModified:
			w.WriteHeader(rw.status) // no body allowed
			return
		}

		b.gz = b.enc.appendGzip(b.gz[:0], b.plain.Bytes())
		hdr := w.Header()
		hdr.Set("Content-Encoding", "gzip")
		hdr.Set("Content-Length", strconv.Itoa(len(b.gz))) // the handler's counted plain bytes
		w.WriteHeader(rw.status)
		w.Write(b.gz)
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
