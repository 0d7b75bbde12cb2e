package fragmentation

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/memfrag/memfrag_exporter/internal/procfile"
)

func TestParseZoneinfo(t *testing.T) {
	data, err := os.ReadFile("../collector/testdata/x86-vm/proc/zoneinfo")
	if err != nil {
		t.Fatal(err)
	}
	zones, err := ParseZoneinfo(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, z := range zones {
		names = append(names, z.Node+"/"+z.Name)
	}
	if got := strings.Join(names, " "); got != "0/DMA 0/DMA32 0/Normal 0/Movable 0/Device" {
		t.Fatalf("zones %s", got)
	}
	// values as printed in the fixture's DMA32 section
	z := zones[1]
	want := ZoneInfo{Node: "0", Name: "DMA32", Free: z.Free, Min: 8532, Low: 10665, High: 12798, Promo: 14931,
		Spanned: 1044480, Present: 782336, Managed: 772807, FreePagesBlocks: z.FreePagesBlocks,
		HasBoost: true, HasPromo: true, HasManaged: true, HasFreePagesBlocks: true}
	if z != want {
		t.Errorf("DMA32:\n got %+v\nwant %+v", z, want)
	}
	if z.Free == 0 || z.FreePagesBlocks == 0 {
		t.Errorf("DMA32 free %d, free pageblock pages %d: want both read", z.Free, z.FreePagesBlocks)
	}
	// the pagesets' "high:" must not be taken for the watermark
	if zones[2].High != 12481 {
		t.Errorf("Normal high watermark %d, want 12481", zones[2].High)
	}
	// an old kernel prints neither managed, boost nor promo
	old, err := os.ReadFile("../collector/testdata/seed-before/proc/zoneinfo")
	if err != nil {
		t.Fatal(err)
	}
	zones, err = ParseZoneinfo(old, zones)
	if err != nil {
		t.Fatal(err)
	}
	if z := zones[2]; z.HasManaged || z.HasBoost || z.HasPromo || z.HasFreePagesBlocks || z.Present != 3932160 {
		t.Errorf("old kernel Normal: %+v", z)
	}
}

func TestParseZoneinfoErrors(t *testing.T) {
	for _, tc := range []struct{ name, input, err string }{
		{"empty", "", "no zones"},
		{"field before header", "  pages free 1\n", "before the first zone header"},
		{"bad count", "Node 0, zone DMA\n  pages free -1\n", "not a page count"},
		{"bad header", "Node 0 zone DMA\n", "node id and comma"},
		{"bad zone name", "Node 0, zone D/MA\n", "not a kernel zone name"},
		{"zone listed twice", "Node 0, zone DMA\n  present 1\nNode 0, zone DMA\n  present 2\n", "listed twice"},
		{"missing value", "Node 0, zone DMA\n        present\n", "not a page count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseZoneinfo([]byte(tc.input), nil)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func fixtureZoneinfos(t testing.TB) [][]byte {
	paths, _ := filepath.Glob("../collector/testdata/*/proc/zoneinfo")
	if len(paths) == 0 {
		t.Fatal("no zoneinfo fixtures")
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzParseZoneinfo(f *testing.F) {
	for _, b := range fixtureZoneinfos(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		zones, err := ParseZoneinfo(data, nil)
		if err != nil {
			return
		}
		if len(zones) == 0 {
			t.Fatal("no error and no zones")
		}
		for _, z := range zones {
			if !procfile.IsName([]byte(z.Name)) || z.Node == "" {
				t.Fatalf("accepted zone %q of node %q", z.Name, z.Node)
			}
		}
	})
}

func BenchmarkParseZoneinfo(b *testing.B) {
	data, err := os.ReadFile("../collector/testdata/x86-vm/proc/zoneinfo")
	if err != nil {
		b.Fatal(err)
	}
	zones, _ := ParseZoneinfo(data, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if zones, err = ParseZoneinfo(data, zones); err != nil {
			b.Fatal(err)
		}
	}
}

// The jumps over counters stay inside the zone: a zone without its own
// "pages free" does not borrow the next zone's, and a zone header right
// after "protection:" (an unpopulated zone) is not skipped.
func TestParseZoneinfoJumpsStayInZone(t *testing.T) {
	in := "Node 0, zone      DMA\n  per-node stats\n      nr_inactive_anon 5\n" +
		"Node 0, zone   Normal\n  pages free     7\n        present  9\n        protection: (0, 0)\n" +
		"Node 0, zone  Movable\n  pages free     0\n        protection: (0, 0)\n" +
		"Node 1, zone   Normal\n  pages free     3\n        protection: (0, 0)\n      nr_free_pages 3\n      nr_free_pages_blocks 2\n  pagesets\n    cpu: 0\n              count: 1\n"
	zones, err := ParseZoneinfo([]byte(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, z := range zones {
		got = append(got, fmt.Sprintf("%s/%s free=%d present=%d blocks=%d,%v", z.Node, z.Name, z.Free, z.Present, z.FreePagesBlocks, z.HasFreePagesBlocks))
	}
	want := []string{"0/DMA free=0 present=0 blocks=0,false", "0/Normal free=7 present=9 blocks=0,false",
		"0/Movable free=0 present=0 blocks=0,false", "1/Normal free=3 present=0 blocks=2,true"}
	if !slices.Equal(got, want) {
		t.Errorf("zones\n got %q\nwant %q", got, want)
	}
}

// Source parses zoneinfo as it reads it, whole zones at a time: for any
// piece size it gives what ParseZoneinfo gives for the whole file, and the
// same error, line number included, for a file broken near its end.
func TestZoneinfoStreamed(t *testing.T) {
	one, err := os.ReadFile("../collector/testdata/x86-vm/proc/zoneinfo")
	if err != nil {
		t.Fatal(err)
	}
	var big bytes.Buffer // 64 nodes, each a copy of the fixture's
	for n := range 64 {
		big.Write(bytes.ReplaceAll(one, []byte("Node 0,"), []byte("Node "+strconv.Itoa(n)+",")))
	}
	broken := append(bytes.Clone(big.Bytes()), "Node 64, zone   Normal\n  pages free     x\n"...)
	for _, tc := range []struct {
		name string
		data []byte
	}{{"64 nodes", big.Bytes()}, {"broken", broken}, {"one node", one}} {
		want, wantErr := ParseZoneinfo(tc.data, nil)
		if (wantErr != nil) != (tc.name == "broken") {
			t.Fatalf("%s: ParseZoneinfo error %v", tc.name, wantErr)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "zoneinfo"), tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{16, 1000, 4096, 64 << 10} {
			s := NewSource(dir)
			s.chunk = chunk
			for range 2 { // the second read reuses the storage
				got, err := s.Zoneinfo()
				if (err == nil) != (wantErr == nil) || err != nil && !strings.HasSuffix(err.Error(), wantErr.Error()) {
					t.Fatalf("%s, chunk %d: error %v, want %v", tc.name, chunk, err, wantErr)
				}
				if err == nil && !reflect.DeepEqual(got, want) {
					t.Fatalf("%s, chunk %d: %d zones differ from the whole file's %d", tc.name, chunk, len(got), len(want))
				}
			}
			s.Close()
		}
		if wantErr == nil && len(want) < 3 {
			t.Fatalf("%s: only %d zones", tc.name, len(want))
		}
	}
}
