package main

import (
	"container/list"
	"crypto/tls"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/memfrag/memfrag_exporter/internal/fastgzip"
	"github.com/memfrag/memfrag_exporter/internal/rawio"
)

// connLimiter bounds the open connections of the HTTP server so that a
// stranger cannot hold its memory with thousands of slow or idle
// connections. At the bound a new connection is not refused: the oldest
// connection that is not in a request (still sending its headers, or idle
// between requests) is closed to make room, so a legitimate client that
// sends its request at once (Alertmanager, Prometheus, a probe) gets
// through however many slow connections are open. When every connection
// is inside a handler, the one that has been in its request longest is
// closed: a stranger can hold a handler for the server's read and write
// timeouts (a body trickled to a page that does not read it, a reply it
// does not read), and refusing the new connection instead would let 512
// such connections keep Alertmanager and Prometheus out for good.
type connLimiter struct {
	max int

	mu    sync.Mutex
	open  int
	quiet *list.List // *limitedConn not in a request, oldest first
	busy  *list.List // *limitedConn in a request, longest in it first

	openGauge prometheus.Gauge
	shed      *prometheus.CounterVec
}

func newConnLimiter(max int) *connLimiter {
	l := &connLimiter{
		max:   max,
		quiet: list.New(),
		busy:  list.New(),
		openGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "memfrag_http_open_connections",
			Help: "Connections the HTTP server holds open.",
		}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "memfrag_http_connections_shed_total",
			Help: "Connections closed by the server's connection bound to make room for a new one: evicted (the oldest one that was sending its headers or idle or, when every open one was in a request, the one longest in its request) or refused (none could be closed).",
		}, []string{"reason"}),
	}
	l.shed.WithLabelValues("evicted")
	l.shed.WithLabelValues("refused")
	return l
}

func (l *connLimiter) collectors() []prometheus.Collector {
	return []prometheus.Collector{l.openGauge, l.shed}
}

// listener wraps inner so that its connections count against the bound.
func (l *connLimiter) listener(inner net.Listener) net.Listener {
	return &limitedListener{Listener: inner, lim: l}
}

type limitedListener struct {
	net.Listener
	lim *connLimiter
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := ll.lim.admit(c); lc != nil {
			return lc, nil
		}
	}
}

// limitedConn is a connection counted by the limiter.
type limitedConn struct {
	net.Conn
	lim    *connLimiter
	elem   *list.Element // in lim.quiet or lim.busy; under lim.mu
	in     *list.List    // the list elem is in; under lim.mu
	closed bool          // under lim.mu
}

// admit counts a new connection, making room if needed; nil means it was
// closed.
func (l *connLimiter) admit(c net.Conn) *limitedConn {
	l.mu.Lock()
	var victim *limitedConn
	if l.open >= l.max {
		e := l.quiet.Front()
		if e == nil {
			e = l.busy.Front()
		}
		if e != nil {
			victim = e.Value.(*limitedConn)
			l.dropLocked(victim)
		} else {
			l.mu.Unlock()
			l.shed.WithLabelValues("refused").Inc()
			c.Close()
			return nil
		}
	}
	lc := &limitedConn{Conn: rawio.NewConn(c), lim: l}
	l.open++
	lc.elem, lc.in = l.quiet.PushBack(lc), l.quiet
	l.openGauge.Set(float64(l.open))
	l.mu.Unlock()
	if victim != nil {
		l.shed.WithLabelValues("evicted").Inc()
		victim.Conn.Close()
	}
	return lc
}

// dropLocked stops counting c. It holds l.mu.
func (l *connLimiter) dropLocked(c *limitedConn) {
	if c.closed {
		return
	}
	c.closed = true
	l.unlistLocked(c)
	l.open--
	l.openGauge.Set(float64(l.open))
}

// GatherWrites is the inner connection's (see rawio.Conn), when it has it.
func (c *limitedConn) GatherWrites(n int) error {
	if g, ok := c.Conn.(fastgzip.WriteGatherer); ok {
		return g.GatherWrites(n)
	}
	return nil
}

func (c *limitedConn) Close() error {
	c.lim.mu.Lock()
	c.lim.dropLocked(c)
	c.lim.mu.Unlock()
	return c.Conn.Close()
}

// unlistLocked takes c out of the quiet or busy list. It holds l.mu.
func (l *connLimiter) unlistLocked(c *limitedConn) {
	if c.elem != nil {
		c.in.Remove(c.elem)
		c.elem, c.in = nil, nil
	}
}

// connState is the http.Server's ConnState hook: a new or idle connection
// is evicted first, the longest quiet first; one in a request only when no
// connection is quiet, the longest in its request first.
func (l *connLimiter) connState(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.closed {
		return
	}
	switch state {
	case http.StateActive:
		l.unlistLocked(lc)
		lc.elem, lc.in = l.busy.PushBack(lc), l.busy
	case http.StateNew, http.StateIdle:
		l.unlistLocked(lc)
		lc.elem, lc.in = l.quiet.PushBack(lc), l.quiet
	case http.StateHijacked, http.StateClosed:
		l.dropLocked(lc)
	}
}
