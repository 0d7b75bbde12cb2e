// Package livetest lets tests that need the real kernel as root skip with a
// reason on a developer's machine, yet fail in CI, where MEMFRAG_REQUIRE_LIVE=1
// (set by .ci/run) says they must run: a green CI then means they ran.
package livetest

import (
	"os"
	"testing"
)

// Required reports whether live tests must run rather than skip.
func Required() bool { return os.Getenv("MEMFRAG_REQUIRE_LIVE") == "1" }

// Skip skips t with the reason why, or fails it when live tests are required.
func Skip(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("live test required (MEMFRAG_REQUIRE_LIVE=1) but cannot run: %s", why)
	}
	t.Skip(why)
}

// Root skips t (or fails it, see Skip) unless it runs as root.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root to read or write kernel files; run the tests as root")
	}
}
