package main

import (
	stdlog "log"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// serverErrorLogEvery is how often at most the HTTP server's own errors and
// promhttp's are logged. A stranger causes them as fast as the network
// allows: with TLS, one per connection that does not complete a handshake
// ("http: TLS handshake error from ..."); on /metrics, one per metric family
// when he resets the connection before reading the reply.
const serverErrorLogEvery = 10 * time.Second

// serverErrorLog is the ErrorLog of the http.Server and of promhttp: the first line at once, then
// at most one per interval, carrying the count of the lines suppressed
// before it, through go-kit like every other log line.
type serverErrorLog struct {
	logger    log.Logger
	component string
	every     time.Duration
	now       func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newServerErrorLog(logger log.Logger, component string) *stdlog.Logger {
	return stdlog.New(&serverErrorLog{logger: logger, component: component, every: serverErrorLogEvery, now: time.Now}, "", 0)
}

func (l *serverErrorLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return len(p), nil
	}
	level.Warn(l.logger).Log("msg", strings.TrimSpace(string(p)), "component", l.component,
		"suppressed", l.suppressed, "interval", l.every)
	l.last, l.suppressed = now, 0
	return len(p), nil
}
