package remediate

import (
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// refusalLogEvery is how often at most a refused webhook request is logged.
// A stranger can send refusals as fast as the network allows; the log gets
// one line per interval with the count of the others, and
// memfrag_remediation_webhook_requests_total{code="401"} the exact count.
const refusalLogEvery = 10 * time.Second

// refusalLog rate-limits the log lines about refused requests.
type refusalLog struct {
	logger log.Logger
	every  time.Duration
	lines  func() // counts each line written

	mu         sync.Mutex
	last       time.Time // when the last line was written
	suppressed int       // refusals since then that were not logged
	lastRemote string    // the newest of them, for the summary line
	lastErr    string
	timer      *time.Timer // writes the summary at the end of the interval
	stopped    bool
}

// note records one refusal: logged at once when none was in the last
// interval, else counted for the summary line.
func (l *refusalLog) note(remote string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.last.IsZero() || now.Sub(l.last) >= l.every {
		l.writeLocked(now, "remediation webhook refused", remote, err.Error())
		return
	}
	l.suppressed++
	l.lastRemote, l.lastErr = remote, err.Error()
	if l.timer == nil && !l.stopped {
		l.timer = time.AfterFunc(l.every-now.Sub(l.last), l.flush)
	}
}

// flush writes the summary of the refusals suppressed in the interval.
func (l *refusalLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = nil
	if l.suppressed == 0 || l.stopped {
		return
	}
	// A refusal may have been logged since the timer was set (it fired
	// late): the summary waits for the end of that line's interval.
	now := time.Now()
	if wait := l.every - now.Sub(l.last); wait > 0 {
		l.timer = time.AfterFunc(wait, l.flush)
		return
	}
	l.writeLocked(now, "remediation webhook refused (summary)", l.lastRemote, l.lastErr)
}

func (l *refusalLog) writeLocked(now time.Time, msg, remote, err string) {
	level.Warn(l.logger).Log("msg", msg, "remote", remote, "err", err,
		"suppressed", l.suppressed, "interval", l.every)
	l.lines()
	l.last, l.suppressed = now, 0
}

// stop writes what is pending and stops the timer.
func (l *refusalLog) stop() {
	l.mu.Lock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if l.suppressed > 0 {
		l.writeLocked(time.Now(), "remediation webhook refused (summary)", l.lastRemote, l.lastErr)
	}
	l.mu.Unlock()
}
