package main

import (
	stdlog "log"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// serverErrorLogEvery is how often at most the HTTP server's own errors are
// logged. A stranger causes one per connection (with TLS, every connection
// that does not complete a handshake: "http: TLS handshake error from ..."),
// as fast as the network allows.
const serverErrorLogEvery = 10 * time.Second

// serverErrorLog is the http.Server's ErrorLog: the first line at once, then
// at most one per interval, carrying the count of the lines suppressed
// before it, through go-kit like every other log line.
type serverErrorLog struct {
	logger log.Logger
	every  time.Duration
	now    func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newServerErrorLog(logger log.Logger) *stdlog.Logger {
	return stdlog.New(&serverErrorLog{logger: logger, every: serverErrorLogEvery, now: time.Now}, "", 0)
}

func (l *serverErrorLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return len(p), nil
	}
	level.Warn(l.logger).Log("msg", strings.TrimSpace(string(p)), "component", "http",
		"suppressed", l.suppressed, "interval", l.every)
	l.last, l.suppressed = now, 0
	return len(p), nil
}
