package fragmentation

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/procfs"
)

func TestParseBuddyinfo(t *testing.T) {
	cases := []struct {
		name  string
		input string
		want  []Zone
		err   string // substring of the error; "" means no error
	}{
		{"seed", "Node 0, zone      DMA      2      2      2      1      2      1      1      0      0      0      2 \n" +
			"Node 0, zone   Normal 127146  68215   1614      0      0      0      0      0      0      0      1 \n",
			[]Zone{{"0", "DMA", []uint64{2, 2, 2, 1, 2, 1, 1, 0, 0, 0, 2}}, {"0", "Normal", []uint64{127146, 68215, 1614, 0, 0, 0, 0, 0, 0, 0, 1}}}, ""},
		{"node ids 10 and 63, tabs, no final newline", "Node 10, zone\tNormal 1 2\nNode 63, zone Movable 0 0", []Zone{{"10", "Normal", []uint64{1, 2}}, {"63", "Movable", []uint64{0, 0}}}, ""},
		{"14 orders", "Node 0, zone Normal 1 2 3 4 5 6 7 8 9 10 11 12 13 14\n", []Zone{{"0", "Normal", []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}}}, ""},
		{"blank lines", "\n\nNode 0, zone DMA 1\n\n", []Zone{{"0", "DMA", []uint64{1}}}, ""},
		{"empty", "", nil, "no zones"},
		{"negative count", "Node 0, zone DMA 1 -2 3\n", nil, "not a count"},
		{"float count", "Node 0, zone DMA 1 2.5 3\n", nil, "not a count"},
		{"exponent", "Node 0, zone DMA 1 1e5 3\n", nil, "not a count"},
		{"NaN", "Node 0, zone DMA NaN\n", nil, "not a count"},
		{"overflow", "Node 0, zone DMA 99999999999999999999\n", nil, "not a count"},
		{"implausible", "Node 0, zone DMA 0 0 0 0 0 0 0 0 0 0 1125899906842624\n", nil, "implausibly large"},
		{"zone listed twice", "Node 0, zone Normal 1 2\nNode 1, zone Normal 1 2\nNode 0, zone Normal 3 4\n", nil, "zone Normal of node 0 listed twice"},
		{"mismatched orders", "Node 0, zone DMA 1 2 3\nNode 0, zone Normal 1 2\n", nil, "has 2 orders, earlier lines 3"},
		{"no counts", "Node 0, zone DMA\n", nil, "no free counts"},
		{"no comma", "Node 0 zone DMA 1\n", nil, "node id and comma"},
		{"bad node", "Node x, zone DMA 1\n", nil, "not a number"},
		{"negative node", "Node -1, zone DMA 1\n", nil, "not a number"},
		{"missing zone keyword", "Node 0, area DMA 1\n", nil, `want "zone"`},
		{"garbage", "hello world\n", nil, `want "Node"`},
		{"control character as zone", "Node 0, zone \f 0\n", nil, "not a kernel zone name"},
		{"too many orders", "Node 0, zone DMA" + strings.Repeat(" 0", MaxOrders+1) + "\n", nil, "more than 32 orders"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseBuddyinfo([]byte(tc.input), nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Parsing the same machine again reuses the previous result's storage.
func TestParseBuddyinfoReusesStorage(t *testing.T) {
	data := []byte("Node 0, zone DMA 1 2\nNode 0, zone Normal 3 4\n")
	zones, err := ParseBuddyinfo(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		zones, err = ParseBuddyinfo(data, zones)
	})
	if err != nil || allocs != 0 {
		t.Errorf("reparse: %v allocations, err %v; want 0, nil", allocs, err)
	}
	// a changed machine (fewer zones, new names) parses correctly into reused storage
	zones, err = ParseBuddyinfo([]byte("Node 1, zone Movable 9\n"), zones)
	if err != nil || len(zones) != 1 || zones[0].Node != "1" || zones[0].Name != "Movable" || !reflect.DeepEqual(zones[0].Free, []uint64{9}) {
		t.Errorf("reparse of another machine: %+v, %v", zones, err)
	}
}

// procfs's parser (used by node_exporter) is the reference for well-formed
// files: wherever ours accepts a file, both must read the same numbers.
// Ours is stricter (procfs accepts "-2", "1e5" and "NaN" as counts), which is
// why the exporter does not use procfs here.
func agreesWithProcfs(t *testing.T, data []byte, zones []Zone) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "buddyinfo"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := fs.BuddyInfo()
	if err != nil {
		t.Fatalf("procfs rejects what we accept: %v\n%q", err, data)
	}
	if len(ref) != len(zones) {
		t.Fatalf("procfs reads %d zones, we read %d\n%q", len(ref), len(zones), data)
	}
	for i, r := range ref {
		z := zones[i]
		if r.Node != z.Node || r.Zone != z.Name || len(r.Sizes) != len(z.Free) {
			t.Fatalf("zone %d: procfs %s/%s/%d orders, we %s/%s/%d", i, r.Node, r.Zone, len(r.Sizes), z.Node, z.Name, len(z.Free))
		}
		for k, n := range z.Free {
			if r.Sizes[k] != float64(n) {
				t.Fatalf("zone %d order %d: procfs %v, we %d", i, k, r.Sizes[k], n)
			}
		}
	}
}

func fixtureBuddyinfos(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("../collector/testdata/*/proc/buddyinfo")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no buddyinfo fixtures: %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = b
	}
	return out
}

func TestFixturesAgreeWithProcfs(t *testing.T) {
	for path, data := range fixtureBuddyinfos(t) {
		zones, err := ParseBuddyinfo(data, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		agreesWithProcfs(t, data, zones)
	}
}

func FuzzParseBuddyinfo(f *testing.F) {
	for _, data := range fixtureBuddyinfos(f) {
		f.Add(data)
	}
	f.Add([]byte("Node 0, zone DMA 1 -2 3\n"))
	f.Add([]byte("Node 0, zone DMA 0 0 0 0 0 0 0 0 0 0 1125899906842623\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		zones, err := ParseBuddyinfo(data, nil)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		for _, z := range zones {
			if len(z.Free) != len(zones[0].Free) || len(z.Free) == 0 || len(z.Free) > MaxOrders {
				t.Fatalf("accepted zone with %d orders", len(z.Free))
			}
			if z.FreePages() > maxFreePages {
				t.Fatalf("accepted %d free pages", z.FreePages())
			}
			for o := range z.Free {
				fi, ui := FragmentationIndex(z.Free, o), UnusableFreeIndex(z.Free, o)
				if fi < -1000 || fi > 1000 || ui < 0 || ui > 1000 {
					t.Fatalf("order %d: indices %d, %d out of range for %v", o, fi, ui, z.Free)
				}
			}
			checkZoneIndices(t, z.Free)
		}
		// Reparsing into the used storage gives the same result.
		again, err := ParseBuddyinfo(data, append([]Zone(nil), zones...))
		if err != nil || !reflect.DeepEqual(again, zones) {
			t.Fatalf("reparse differs: %v", err)
		}
		if procfsComparable(data, zones) {
			agreesWithProcfs(t, data, zones)
		}
	})
}

// procfsComparable leaves out what procfs splits differently by design:
// blank lines (procfs rejects them), carriage returns and extra commas (it
// keeps them in a field).
func procfsComparable(data []byte, zones []Zone) bool {
	text := strings.TrimSuffix(string(data), "\n")
	if strings.ContainsAny(text, "\r") || strings.Count(text, ",") != len(zones) {
		return false
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			return false
		}
	}
	return true
}

func BenchmarkParseBuddyinfo(b *testing.B) {
	data, err := os.ReadFile("../collector/testdata/numa-sparse/proc/buddyinfo")
	if err != nil {
		b.Fatal(err)
	}
	zones, _ := ParseBuddyinfo(data, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if zones, err = ParseBuddyinfo(data, zones); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProcfsBuddyInfo is the reference: procfs reading and parsing the
// same file, as node_exporter does.
func BenchmarkProcfsBuddyInfo(b *testing.B) {
	fs, err := procfs.NewFS("../collector/testdata/numa-sparse/proc")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fs.BuddyInfo(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSourceBuddyinfo(b *testing.B) {
	s := NewSource("../collector/testdata/numa-sparse/proc")
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Buddyinfo(); err != nil {
			b.Fatal(err)
		}
	}
}
