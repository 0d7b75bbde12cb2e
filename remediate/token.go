package remediate

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxTokenBytes bounds the token file; a bearer token is a few dozen bytes.
const maxTokenBytes = 4096

// tokenStore holds the SHA-256 of the bearer token. Comparing digests in
// constant time hides both the content and the length of the token.
type tokenStore struct {
	path string
	sum  atomic.Pointer[[sha256.Size]byte]

	mu    sync.Mutex // serializes loads
	stamp fileStamp
}

// fileStamp tells whether a file changed without reading it. Kubernetes
// rotates mounted secrets by swapping a symlink, which changes the inode. A
// missing file has a stamp of its own, so that its deletion is a change too.
type fileStamp struct {
	ino, size uint64
	mtime     time.Time
	missing   bool
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: uint64(fi.Size()), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

func statStamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{missing: true}
	}
	return stampOf(fi)
}

func newTokenStore(path string) (*tokenStore, error) {
	t := &tokenStore{path: path}
	if _, err := t.load(); err != nil {
		return nil, err
	}
	return t, nil
}

// load reads the token file. On error the previous token stays in force: a
// half-written or briefly missing file during rotation must not lock
// Alertmanager out (it does not retry a 401). Deleting or emptying the file
// therefore does not revoke the token; replacing its content does. The
// stamp of the file as tried is kept either way, so that a file that stays
// broken is reported once, not on every check.
func (t *tokenStore) load() (changed bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stamp = statStamp(t.path)
	f, err := os.Open(t.path)
	if err != nil {
		return false, fmt.Errorf("reading token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("reading token file: %w", err)
	}
	t.stamp = stampOf(fi)
	if fi.Size() > maxTokenBytes {
		return false, fmt.Errorf("token file %s is larger than %d bytes", t.path, maxTokenBytes)
	}
	buf := make([]byte, maxTokenBytes+1)
	n, err := f.Read(buf)
	if err != nil && n == 0 && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading token file %s: %w", t.path, err)
	}
	tok := bytes.TrimSpace(buf[:n])
	if len(tok) == 0 {
		return false, fmt.Errorf("token file %s is empty", t.path)
	}
	sum := sha256.Sum256(tok)
	old := t.sum.Load()
	t.sum.Store(&sum)
	return old == nil || *old != sum, nil
}

// changed reports whether the file looks different from the last load
// attempt, appearing and disappearing included.
func (t *tokenStore) changed() bool {
	now := statStamp(t.path)
	t.mu.Lock()
	defer t.mu.Unlock()
	return now != t.stamp
}

var errNoBearer = errors.New("no bearer token")

// check verifies an Authorization header value in constant time.
func (t *tokenStore) check(header string) error {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return errNoBearer
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	want := t.sum.Load()
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return errors.New("wrong bearer token")
	}
	return nil
}
