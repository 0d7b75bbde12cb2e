package remediate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-kit/log/level"
)

// stateVersion is the format of the state file. A file of another version
// is not guessed at: the receiver fails closed.
const stateVersion = 1

// maxStateBytes bounds the state file read at start. The file holds one
// entry per piece of memory (at most 1025) and the dedupe set (at most
// dedupeSize entries of about 90 bytes), well under this.
const maxStateBytes = 1 << 20

// stateFile is what --remediate.state-file holds: what cooldowns, backoff
// and dedupe need to be honoured across restarts. Times are wall-clock.
type stateFile struct {
	Version int                    `json:"version"`
	SavedAt time.Time              `json:"saved_at"`
	Memory  map[string]memoryState `json:"memory"` // by scope: "all" or "node<N>"
	Seen    []seenState            `json:"seen"`   // oldest first
}

type memoryState struct {
	CooldownUntil time.Time `json:"cooldown_until"`
	BackoffUntil  time.Time `json:"backoff_until"`
	Misses        int       `json:"misses"`
}

type seenState struct {
	Key   string `json:"key"`   // hex SHA-256 of fingerprint@startsAt
	Scope string `json:"scope"` // the memory its action touched
}

// Operations of memfrag_remediation_state_errors_total{op}.
const (
	stateOpLoad = "load"
	stateOpSave = "save"
)

// loadState reads the state file at start and reports whether it could. A
// missing file is a first start.
// Anything else that keeps the file from being read as a known version
// fails closed: every scope waits one cooldown from now, since what ran
// before the restart is not known. It runs before New returns.
func (r *Receiver) loadState(now time.Time) bool {
	path := r.cfg.StateFile
	st, err := readStateFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		level.Info(r.logger).Log("msg", "no remediation state file yet; starting with no cooldowns", "path", path)
		return true
	case err != nil:
		r.metrics.stateErrors.WithLabelValues(stateOpLoad).Inc()
		r.metrics.stateOK.Set(0)
		until := now.Add(r.cfg.Cooldown)
		r.keys[scopeAll] = &keyState{cooldownUntil: until, backoffUntil: until}
		level.Error(r.logger).Log("msg", "cannot read the remediation state file; failing closed: no action until one cooldown has passed",
			"path", path, "err", err, "no_action_until", until.Format(time.RFC3339))
		return false
	}
	r.applyState(st, now)
	level.Info(r.logger).Log("msg", "remediation state restored", "path", path, "saved_at", st.SavedAt.Format(time.RFC3339),
		"scopes", len(st.Memory), "dedupe_entries", len(st.Seen))
	return true
}

// readStateFile reads and checks a state file.
func readStateFile(path string) (*stateFile, error) {
	// O_NONBLOCK: a FIFO at the path would otherwise block the start until
	// something writes to it; it is refused below like any non-regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening state file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading state file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("state file %s is not a regular file (%s)", path, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading state file %s: %w", path, err)
	}
	return parseState(data)
}

// parseState decodes a state file and rejects what this version did not
// write: unknown fields, another version, scopes or keys it cannot name.
func parseState(data []byte) (*stateFile, error) {
	if len(data) > maxStateBytes {
		return nil, fmt.Errorf("state file is larger than %d bytes", maxStateBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var st stateFile
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("parsing state file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parsing state file: data after the JSON object")
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("state file version %d, this exporter reads version %d", st.Version, stateVersion)
	}
	for scope, m := range st.Memory {
		if !validScope(scope) {
			return nil, fmt.Errorf("state file names unknown memory %q", clip(scope))
		}
		if m.Misses < 0 || m.Misses > maxBackoffShift {
			return nil, fmt.Errorf("state file: misses %d of %s out of 0..%d", m.Misses, scope, maxBackoffShift)
		}
	}
	if len(st.Seen) > dedupeSize {
		return nil, fmt.Errorf("state file holds %d dedupe entries, at most %d", len(st.Seen), dedupeSize)
	}
	for _, s := range st.Seen {
		if b, err := hex.DecodeString(s.Key); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("state file: dedupe key %q is not a SHA-256", clip(s.Key))
		}
		if !validScope(s.Scope) {
			return nil, fmt.Errorf("state file names unknown memory %q", clip(s.Scope))
		}
	}
	return &st, nil
}

func validScope(s string) bool {
	if s == scopeAll {
		return true
	}
	id, ok := strings.CutPrefix(s, "node")
	return ok && validNodeID(id)
}

// applyState takes over a parsed state. A wait is never longer than the
// longest this configuration could have set from now (a shorter cooldown
// since, or a clock that was ahead), so a bad clock cannot lock out the cure
// for good.
func (r *Receiver) applyState(st *stateFile, now time.Time) {
	limit := now.Add(backoff(r.cfg.Cooldown, maxBackoffShift))
	if limit.Before(now) { // overflow
		limit = now.Add(time.Duration(1<<63 - 1))
	}
	clamp := func(t time.Time) time.Time {
		if t.After(limit) {
			return limit
		}
		return t
	}
	for scope, m := range st.Memory {
		r.keys[scope] = &keyState{cooldownUntil: clamp(m.CooldownUntil), backoffUntil: clamp(m.BackoffUntil), misses: m.Misses}
	}
	for _, s := range st.Seen {
		var k [sha256.Size]byte
		hex.Decode(k[:], []byte(s.Key))
		r.remember(k, s.Scope)
	}
}

// snapshotState is the state to save: every scope, and the dedupe entries
// whose wait is not over (the others would be decided anew anyway). It
// holds r.mu.
func (r *Receiver) snapshotState(now time.Time) *stateFile {
	st := &stateFile{Version: stateVersion, SavedAt: now, Memory: make(map[string]memoryState, len(r.keys))}
	for scope, ks := range r.keys {
		st.Memory[scope] = memoryState{CooldownUntil: ks.cooldownUntil, BackoffUntil: ks.backoffUntil, Misses: ks.misses}
	}
	st.Seen = []seenState{}
	for _, k := range r.seenFIFO {
		scope := r.seen[k]
		if r.waiting(scope, now) != "" {
			st.Seen = append(st.Seen, seenState{Key: hex.EncodeToString(k[:]), Scope: scope})
		}
	}
	return st
}

// saveState writes the state file when one is configured. A failure is
// logged and counted; the receiver goes on with what it holds in memory,
// which still honours every wait until the process ends.
func (r *Receiver) saveState(when string) {
	if r.cfg.StateFile == "" {
		return
	}
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	st := r.snapshotState(r.now())
	r.mu.Unlock()
	data, err := json.Marshal(st)
	if err == nil {
		err = writeFileAtomic(r.cfg.StateFile, append(data, '\n'))
	}
	if err != nil {
		r.metrics.stateErrors.WithLabelValues(stateOpSave).Inc()
		r.metrics.stateOK.Set(0)
		level.Error(r.logger).Log("msg", "cannot save the remediation state file; cooldowns hold until this process ends but not across a restart",
			"path", r.cfg.StateFile, "when", when, "err", err)
		return
	}
	r.metrics.stateOK.Set(1)
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content: a temp file in the same directory, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("creating temp file for %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to sync it: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
