package fragmentation

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/memfrag/memfrag_exporter/internal/livetest"
)

const extfragDir = "/sys/kernel/debug/extfrag"

// ensureDebugfs mounts debugfs when it is not mounted yet.
func ensureDebugfs(t *testing.T) {
	t.Helper()
	livetest.Root(t)
	if _, err := os.Stat(extfragDir + "/unusable_index"); err == nil {
		return
	}
	if out, err := exec.Command("mount", "-t", "debugfs", "none", "/sys/kernel/debug").CombinedOutput(); err != nil {
		livetest.Skip(t, fmt.Sprintf("cannot mount debugfs: %v: %s", err, out))
	}
	if _, err := os.Stat(extfragDir + "/unusable_index"); err != nil {
		livetest.Skip(t, "this kernel has no "+extfragDir+" (CONFIG_COMPACTION or CONFIG_DEBUG_FS off)")
	}
}

// parseDebugfsIndex reads the kernel's "Node 0, zone Normal 0.000 -1.000 ..."
// into thousandths.
func parseDebugfsIndex(t *testing.T, data []byte) map[string][]int64 {
	t.Helper()
	out := map[string][]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			t.Fatalf("debugfs line %q", line)
		}
		key := strings.TrimSuffix(f[1], ",") + "/" + f[3]
		for _, v := range f[4:] {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("debugfs value %q: %v", v, err)
			}
			out[key] = append(out[key], int64(x*1000+copysign(0.5, x)))
		}
	}
	return out
}

func copysign(a, x float64) float64 {
	if x < 0 {
		return -a
	}
	return a
}

// TestAgainstKernel compares our indices with the kernel's own, computed by
// the running kernel from the same free lists. buddyinfo and debugfs are two
// reads, so the free lists can change in between: a comparison only counts
// when buddyinfo read the same before and after debugfs.
func TestAgainstKernel(t *testing.T) {
	ensureDebugfs(t)
	// Other tests (remediate's real-kernel test) may be compacting memory
	// meanwhile: keep trying, with pauses, for up to 30 s.
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; time.Now().Before(deadline); attempt++ {
		if attempt > 1 {
			time.Sleep(5 * time.Millisecond)
		}
		before, err1 := os.ReadFile("/proc/buddyinfo")
		frag, err2 := os.ReadFile(extfragDir + "/extfrag_index")
		unusable, err3 := os.ReadFile(extfragDir + "/unusable_index")
		after, err4 := os.ReadFile("/proc/buddyinfo")
		for _, err := range []error{err1, err2, err3, err4} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(before, after) {
			continue // the free lists moved during the reads; try again
		}
		zones, err := ParseBuddyinfo(before, nil)
		if err != nil {
			t.Fatal(err)
		}
		kernelFrag, kernelUnusable := parseDebugfsIndex(t, frag), parseDebugfsIndex(t, unusable)
		compared := 0
		for _, z := range zones {
			key := z.Node + "/" + z.Name
			kf, ku := kernelFrag[key], kernelUnusable[key]
			if len(kf) != len(z.Free) || len(ku) != len(z.Free) {
				t.Fatalf("%s: kernel prints %d/%d orders, buddyinfo %d", key, len(kf), len(ku), len(z.Free))
			}
			for o := range z.Free {
				if got := FragmentationIndex(z.Free, o); abs(got-kf[o]) > 1 {
					t.Errorf("%s order %d: fragmentation index %d/1000, kernel %d/1000", key, o, got, kf[o])
				}
				if got := UnusableFreeIndex(z.Free, o); abs(got-ku[o]) > 1 {
					t.Errorf("%s order %d: unusable free index %d/1000, kernel %d/1000", key, o, got, ku[o])
				}
				compared += 2
			}
		}
		t.Logf("attempt %d: %d values of %d zones agree with the kernel's debugfs to within 0.001", attempt, compared, len(zones))
		return
	}
	t.Fatal("for 30 s, buddyinfo changed during every attempt to read it around debugfs")
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
