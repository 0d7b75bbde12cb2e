package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// Every record, whether the packages write it through go-kit or
// exporter-toolkit through slog, carries these keys, in this order in
// logfmt: level, ts, caller, msg, then its own.
const (
	timeKey   = "ts"
	callerKey = "caller"
	msgKey    = "msg"
)

// newLogger builds the go-kit logger the packages use and an *slog.Logger
// for exporter-toolkit that writes through the same go-kit logger with the
// same keys, so that one pipeline reads both.
func newLogger(lvl, format string) (log.Logger, *slog.Logger) {
	w := log.NewSyncWriter(os.Stderr)
	var base log.Logger
	if format == "json" {
		base = log.NewJSONLogger(w)
	} else {
		base = log.NewLogfmtLogger(w)
	}
	var sl slog.Level
	switch lvl {
	case "debug":
		base, sl = level.NewFilter(base, level.AllowDebug()), slog.LevelDebug
	case "warn":
		base, sl = level.NewFilter(base, level.AllowWarn()), slog.LevelWarn
	case "error":
		base, sl = level.NewFilter(base, level.AllowError()), slog.LevelError
	default:
		base, sl = level.NewFilter(base, level.AllowInfo()), slog.LevelInfo
	}
	logger := log.With(base, timeKey, log.DefaultTimestampUTC, callerKey, log.DefaultCaller)
	return logger, slog.New(&slogHandler{logger: base, min: sl})
}

// slogHandler writes slog records as go-kit records: the level as go-kit's
// level value (so level.NewFilter applies), the record's time and caller
// formatted as go-kit's DefaultTimestampUTC and DefaultCaller would.
type slogHandler struct {
	logger log.Logger
	min    slog.Level
	attrs  []any  // from WithAttrs, already prefixed with the groups
	group  string // "a.b." from WithGroup
}

func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	kv := make([]any, 0, 8+len(h.attrs)+2*r.NumAttrs())
	kv = append(kv, level.Key(), goKitLevel(r.Level), timeKey, r.Time.UTC().Format(time.RFC3339Nano))
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		kv = append(kv, callerKey, filepath.Base(f.File)+":"+strconv.Itoa(f.Line))
	}
	kv = append(kv, msgKey, r.Message)
	kv = append(kv, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		kv = appendAttr(kv, h.group, a)
		return true
	})
	return h.logger.Log(kv...)
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]any(nil), h.attrs...)
	for _, a := range attrs {
		c.attrs = appendAttr(c.attrs, h.group, a)
	}
	return &c
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	return &c
}

// appendAttr flattens groups into dotted keys, as the keys of a flat
// logfmt line must be.
func appendAttr(kv []any, prefix string, a slog.Attr) []any {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			kv = appendAttr(kv, p, g)
		}
		return kv
	}
	if a.Key == "" {
		return kv
	}
	return append(kv, prefix+a.Key, v.Any())
}

func goKitLevel(l slog.Level) level.Value {
	switch {
	case l >= slog.LevelError:
		return level.ErrorValue()
	case l >= slog.LevelWarn:
		return level.WarnValue()
	case l >= slog.LevelInfo:
		return level.InfoValue()
	default:
		return level.DebugValue()
	}
}
