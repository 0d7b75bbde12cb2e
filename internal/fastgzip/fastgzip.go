// Package fastgzip gzips HTTP responses cheaply, in CPU and in memory.
//
// promhttp compresses at gzip's default level with compress/gzip, whose
// writer holds ~1.2 MB of compressor state: for this exporter's ~30 KB
// exposition that is most of the live heap, and the compression costs more
// CPU than reading and parsing every kernel file. Handler instead buffers
// the response and compresses it in one piece with an encoder made for
// exposition text (see encoder), whose state is an 80 KiB table and token
// buffer and the tokens of the body's comment lines (40 KiB at 8 NUMA
// nodes).
package fastgzip

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// maxPooled bounds the buffers kept for reuse, so one huge response does not
// pin its buffers for the life of the process.
const maxPooled = 1 << 20

type buffers struct {
	plain, gz []byte
	enc       encoder
}

var pool = sync.Pool{New: func() any { return new(buffers) }}

// responseWriter holds the handler's response until it returns: its status
// and its body, which is compressed as a whole.
type responseWriter struct {
	http.ResponseWriter
	buf    []byte
	status int
}

// BodyBuffer is implemented by the http.ResponseWriter Handler gives its
// handler: a handler that builds its whole body in a byte slice appends to
// Body() and hands the result to SetBody, instead of writing a copy.
type BodyBuffer interface {
	Body() []byte     // the body written so far
	SetBody(b []byte) // the body from now on, status 200 unless one was set
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.buf = append(w.buf, b...)
	return len(b), nil
}

func (w *responseWriter) Body() []byte { return w.buf }

func (w *responseWriter) SetBody(b []byte) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.buf = b
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
		rw := &responseWriter{ResponseWriter: w, buf: b.plain[:0]}
		defer func() {
			if cap(rw.buf) <= maxPooled && cap(b.gz) <= maxPooled {
				b.plain = rw.buf[:0]
				pool.Put(b)
			}
		}()
		h.ServeHTTP(rw, r)
		switch {
		case rw.status == 0:
			rw.status = http.StatusOK
		case rw.status == http.StatusNoContent || rw.status == http.StatusNotModified:
			w.WriteHeader(rw.status) // no body allowed
			return
		}

		b.gz = b.enc.appendGzip(b.gz[:0], rw.buf)
		hdr := w.Header()
		hdr.Set("Content-Encoding", "gzip")
		hdr.Set("Content-Length", strconv.Itoa(len(b.gz))) // the handler's counted plain bytes
		if g, ok := r.Context().Value(connKey{}).(WriteGatherer); ok {
			// The header and the body in one write: the bytes written
			// from here on are the body's and a header of at least the
			// status line and these fields.
			n := len(b.gz) + len("HTTP/1.1 200\r\n\r\n")
			for k, v := range hdr {
				n += len(v) * (len(k) + len(": \r\n"))
				for _, s := range v {
					n += len(s)
				}
			}
			g.GatherWrites(n)
			defer g.GatherWrites(0) // anything held, whatever happens
		}
		w.WriteHeader(rw.status)
		w.Write(b.gz)
		if f, ok := w.(http.Flusher); ok {
			f.Flush() // what net/http still buffers completes the write
		}
	})
}

// A WriteGatherer is a connection that can hold the writes that follow
// until n bytes have come, and send them in one system call: see
// rawio.Conn.
type WriteGatherer interface {
	GatherWrites(n int) error
}

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it lets Handler send a
// response's header and body in one write on connections that are
// WriteGatherers.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if g, ok := c.(WriteGatherer); ok {
		return context.WithValue(ctx, connKey{}, g)
	}
	return ctx
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
