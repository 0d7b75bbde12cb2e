package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	slgk "github.com/tjhop/slog-gokit"
)

// newLogger builds the go-kit logger the packages use and bridges it to the
// *slog.Logger exporter-toolkit wants.
func newLogger(lvl, format string) (log.Logger, *slog.Logger) {
	var base log.Logger
	w := log.NewSyncWriter(os.Stderr)
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
	// slog records carry their own time (logged as time=): no ts= on the bridge.
	return log.With(base, "ts", log.DefaultTimestampUTC), slog.New(slgk.NewGoKitHandler(base, sl))
}

// stdlogAdapter lets promhttp report encoding errors through go-kit.
type stdlogAdapter struct{ logger log.Logger }

func (a stdlogAdapter) Println(v ...any) {
	level.Error(a.logger).Log("msg", fmt.Sprint(v...))
}
