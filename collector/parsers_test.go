package collector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/memfrag/memfrag_exporter/internal/procfile"

	"github.com/go-kit/log"
)

func newTestVmstat(t testing.TB) *vmstatCollector {
	s, err := newVmstat(Config{ProcPath: t.TempDir()}, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s.(*vmstatCollector)
}

func TestVmstatParse(t *testing.T) {
	c := newTestVmstat(t)
	for _, tc := range []struct{ name, input, err string }{
		{"known and unknown counters", "nr_free_pages 5\ncompact_stall 7\nallocstall_normal 3\nallocstall_weird9 1\n", ""},
		{"negative", "compact_stall -1\n", "not a count"},
		{"missing value", "compact_stall\n", "not a count"},
		{"none known", "nr_free_pages 5\n", "none of the expected counters"},
		{"odd allocstall zone ignored", "allocstall_\xff 4\ncompact_fail 1\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values, err := c.parse([]byte(tc.input), nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range values {
				for _, l := range v.metric.labels {
					if !procfile.IsName([]byte(strings.ToLower(l))) {
						t.Errorf("label value %q", l)
					}
				}
			}
		})
	}
	values, _ := c.parse([]byte("compact_stall 7\nallocstall_normal 3\nallocstall_weird9 1\n"), nil)
	if len(values) != 3 || values[0].value != 7 || values[1].metric.labels[0] != "Normal" || values[2].metric.labels[0] != "weird9" {
		t.Errorf("parsed %+v", values)
	}
}

func TestParseModes(t *testing.T) {
	for _, tc := range []struct{ input, active, err string }{
		{"always [madvise] never\n", "madvise", ""},
		{"always defer [defer+madvise] madvise never\n", "defer+madvise", ""},
		{"[always] madvise never", "always", ""},
		{"always madvise never\n", "", "no [active] mode"},
		{"[always] [madvise] never\n", "", "two active modes"},
		{"always [mad vise] never\n", "", "malformed mode"},
		{"always [] never\n", "", "malformed mode"},
		{"", "", "no [active] mode"},
	} {
		m, err := parseModes([]byte(tc.input))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.input, err, tc.err)
			}
			continue
		}
		if err != nil || string(m.names[m.active]) != tc.active {
			t.Errorf("%q: active %q, err %v; want %q", tc.input, m.names[m.active], err, tc.active)
		}
	}
}

func FuzzVmstatParse(f *testing.F) {
	paths, _ := filepath.Glob("testdata/*/proc/vmstat")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	c := newTestVmstat(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		values, err := c.parse(data, nil)
		if err != nil {
			return
		}
		for _, v := range values {
			if v.value < 0 {
				t.Fatalf("negative counter %v", v.value)
			}
			for _, l := range v.metric.labels {
				for _, r := range l {
					if r < 0x20 || r > 0x7e {
						t.Fatalf("label value %q", l)
					}
				}
			}
		}
	})
}

func FuzzParseModes(f *testing.F) {
	f.Add([]byte("always [madvise] never\n"))
	f.Add([]byte("always defer defer+madvise [madvise] never\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseModes(data)
		if err != nil {
			return
		}
		if m.active < 0 || m.active >= m.n {
			t.Fatalf("active %d of %d", m.active, m.n)
		}
		for i := 0; i < m.n; i++ {
			if !procfile.IsName(m.names[i]) {
				t.Fatalf("mode %q", m.names[i])
			}
		}
	})
}

func BenchmarkVmstatParse(b *testing.B) {
	data, err := os.ReadFile("testdata/x86-vm/proc/vmstat")
	if err != nil {
		b.Fatal(err)
	}
	c := newTestVmstat(b)
	values, _ := c.parse(data, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if values, err = c.parse(data, values); err != nil {
			b.Fatal(err)
		}
	}
}
