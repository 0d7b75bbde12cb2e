package fastgzip

import (
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// exposition is text like a scrape of nodes NUMA nodes: per-order series
// of block counts, byte sizes and indices, zone series, headers.
func exposition(nodes int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	zones := []string{"DMA", "DMA32", "Normal", "Movable"}
	for i, name := range []string{"memfrag_free_blocks", "memfrag_free_bytes", "memfrag_fragmentation_index", "memfrag_unusable_free_index"} {
		fmt.Fprintf(&b, "# HELP %s What %s says, per order.\n# TYPE %s gauge\n", name, name, name)
		for n := 0; n < nodes; n++ {
			for _, z := range zones {
				for o := 0; o <= 10; o++ {
					var v float64
					switch i {
					case 0:
						v = float64(r.IntN(5000) >> o)
					case 1:
						v = float64(r.IntN(5000)>>o) * float64(int(4096)<<o)
					default:
						v = float64(r.IntN(1000)) / 1000
						if r.IntN(3) == 0 {
							v = -1
						}
					}
					fmt.Fprintf(&b, "%s{numa_node=\"%d\",order=\"%d\",zone=\"%s\"} %s\n", name, n, o, z, strconv.FormatFloat(v, 'g', -1, 64))
				}
			}
		}
	}
	for n := 0; n < nodes; n++ {
		for _, w := range []string{"min", "low", "high", "promo"} {
			fmt.Fprintf(&b, "memfrag_zone_watermark_bytes{numa_node=\"%d\",watermark=\"%s\",zone=\"Normal\"} %d\n", n, w, r.IntN(1<<20)*4096)
		}
	}
	return []byte(b.String())
}

func gunzip(t testing.TB, z []byte) []byte {
	t.Helper()
	zr, err := stdgzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	zr.Multistream(false)
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("inflating: %v", err)
	}
	return got
}

func roundTrip(t *testing.T, name string, src []byte) int {
	t.Helper()
	var e encoder
	z := e.appendGzip([]byte("kept"), src)
	if string(z[:4]) != "kept" {
		t.Fatalf("%s: dst's bytes were overwritten", name)
	}
	if got := gunzip(t, z[4:]); !bytes.Equal(got, src) {
		t.Fatalf("%s: %d bytes came back as %d different ones", name, len(src), len(got))
	}
	// A reused encoder makes the same bytes.
	if again := e.appendGzip(nil, src); !bytes.Equal(again, z[4:]) {
		t.Fatalf("%s: a reused encoder wrote other bytes", name)
	}
	return len(z) - 4
}

func TestDeflateRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 200_000)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	digits := make([]byte, 300_000) // many blocks of literals, skewed codes
	for i := range digits {
		digits[i] = "0123456789\n"[r.IntN(11)]
	}
	for _, tc := range []struct {
		name string
		src  []byte
	}{
		{"empty", nil},
		{"one byte", []byte("x")},
		{"three bytes", []byte("abc")},
		{"newlines", []byte(strings.Repeat("\n", 1000))},
		{"one byte repeated", bytes.Repeat([]byte{'a'}, 100_000)},
		{"exposition", exposition(2)},
		{"exposition 8 nodes", exposition(8)},
		{"exposition 64 nodes", exposition(64)}, // over 32 KiB of window, many blocks
		{"random", random},
		{"digits", digits},
		{"long line", bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz0123456789"), 5000)},
		{"no newline then lines", append(bytes.Repeat([]byte("q"), 70_000), exposition(1)...)},
	} {
		n := roundTrip(t, tc.name, tc.src)
		if tc.name == "random" && n > len(tc.src)+len(tc.src)/1000+64 {
			t.Errorf("random: %d bytes for %d, want stored blocks", n, len(tc.src))
		}
	}
}

// The body is within a quarter of what gzip's default level makes of
// exposition text, and no larger than klauspost's stateless deflate's.
func TestDeflateRatio(t *testing.T) {
	src := exposition(8)
	var e encoder
	ours := len(e.appendGzip(nil, src))
	var std bytes.Buffer
	zw := stdgzip.NewWriter(&std)
	zw.Write(src)
	zw.Close()
	var sl bytes.Buffer
	kw, _ := gzip.NewWriterLevel(&sl, gzip.StatelessCompression)
	kw.Write(src)
	kw.Close()
	t.Logf("%d bytes of text: ours %d, compress/gzip default %d, stateless %d", len(src), ours, std.Len(), sl.Len())
	if ours > std.Len()*5/4 || ours > sl.Len() {
		t.Errorf("ours %d bytes, compress/gzip %d, stateless %d: want within 5/4 of gzip and no more than stateless", ours, std.Len(), sl.Len())
	}
}

// Codes stay within their length limit and are complete (Kraft sum 1),
// also when the frequencies would make a deeper tree.
func TestHuffmanLimit(t *testing.T) {
	fib := make([]uint32, numLit)
	a, b := uint32(1), uint32(1)
	for i := 0; i < 30; i++ {
		fib[i] = a
		a, b = b, a+b
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name    string
		freq    []uint32
		maxBits uint8
	}{
		{"fibonacci", fib, 15},
		{"fibonacci clen", fib[:numClen], 7},
		{"one symbol", append([]uint32{7}, make([]uint32, 29)...), 15},
		{"none", make([]uint32, numDist), 15},
		{"random", func() []uint32 {
			f := make([]uint32, numLit)
			for i := range f {
				f[i] = r.Uint32N(1000) * r.Uint32N(2)
			}
			return f
		}(), 15},
	} {
		var h huffman
		h.build(tc.freq, tc.maxBits)
		kraft, coded := 0.0, 0
		for s := range tc.freq {
			l := h.length[s]
			if l > tc.maxBits {
				t.Errorf("%s: symbol %d has a %d-bit code, limit %d", tc.name, s, l, tc.maxBits)
			}
			if tc.freq[s] != 0 && l == 0 {
				t.Errorf("%s: symbol %d is used but has no code", tc.name, s)
			}
			if l != 0 {
				kraft += 1 / float64(uint(1)<<l)
				coded++
			}
		}
		if kraft != 1 || coded < 2 {
			t.Errorf("%s: Kraft sum %v over %d codes, want a complete code of at least 2", tc.name, kraft, coded)
		}
	}
}

func FuzzDeflate(f *testing.F) {
	f.Add([]byte("memfrag_free_blocks{numa_node=\"0\",order=\"0\",zone=\"DMA\"} 1\nmemfrag_free_blocks{numa_node=\"0\",order=\"1\",zone=\"DMA\"} 10\n"))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 300))
	f.Fuzz(func(t *testing.T, src []byte) {
		var e encoder
		if got := gunzip(t, e.appendGzip(nil, src)); !bytes.Equal(got, src) {
			t.Fatalf("%q came back as %q", src, got)
		}
	})
}

// BenchmarkEncoders compares, on exposition text of 1 and 8 NUMA nodes,
// this encoder with klauspost's stateless deflate (used before) and
// compress/gzip at BestSpeed; gz-bytes is the size of the body.
func BenchmarkEncoders(b *testing.B) {
	for _, nodes := range []int{1, 8} {
		src := exposition(nodes)
		b.Run(fmt.Sprintf("nodes=%d/ours", nodes), func(b *testing.B) {
			var e encoder
			var out []byte
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				out = e.appendGzip(out[:0], src)
			}
			b.ReportMetric(float64(len(out)), "gz-bytes")
		})
		kw, _ := gzip.NewWriterLevel(nil, gzip.StatelessCompression)
		benchWriter(b, fmt.Sprintf("nodes=%d/stateless", nodes), src, kw)
		sw, _ := stdgzip.NewWriterLevel(nil, stdgzip.BestSpeed)
		benchWriter(b, fmt.Sprintf("nodes=%d/stdlib-bestspeed", nodes), src, sw)
	}
}

// benchWriter benchmarks a gzip writer of compress/gzip's API.
func benchWriter(b *testing.B, name string, src []byte, zw interface {
	io.WriteCloser
	Reset(io.Writer)
}) {
	b.Run(name, func(b *testing.B) {
		var out bytes.Buffer
		b.SetBytes(int64(len(src)))
		for b.Loop() {
			out.Reset()
			zw.Reset(&out)
			zw.Write(src)
			zw.Close()
		}
		b.ReportMetric(float64(out.Len()), "gz-bytes")
	})
}

// commented is exposition text of many families whose help texts share
// phrases, series counts per family from counts (cycled), in order.
func commented(families int, counts []int, order []int) []byte {
	var b strings.Builder
	for k := range families {
		f := k
		if order != nil {
			f = order[k]
		}
		name := fmt.Sprintf("memfrag_family_%d_bytes", f)
		fmt.Fprintf(&b, "# HELP %s Free memory per NUMA node and zone, family %d, as the kernel counts it.\n# TYPE %s gauge\n", name, f, name)
		for i := range counts[f%len(counts)] {
			fmt.Fprintf(&b, "%s{numa_node=\"%d\",zone=\"Normal\"} %d\n", name, i, (i%3)*4096)
		}
	}
	return []byte(b.String())
}

// Comment lines are tokenized from the cache only after the same lines as
// when their tokens were made: bodies in which they move, lie far apart,
// are long, come last without a newline or follow a match, all come back
// whole from one reused encoder, in any order, in the bytes a new encoder
// writes.
func TestHeaderCache(t *testing.T) {
	reversed := make([]int, 60)
	for i := range reversed {
		reversed[i] = 59 - i
	}
	many := make([]int, 3000) // more comment text than the cache keeps
	for i := range many {
		many[i] = i
	}
	long := "# HELP x " + strings.Repeat("very long help ", 100) + "\n"
	bodies := map[string][]byte{
		"families":           commented(60, []int{3, 0, 17}, nil),
		"far apart":          commented(60, []int{3, 1000}, nil), // a family of 60 KB
		"reordered":          commented(60, []int{3, 0, 17}, reversed),
		"more families":      commented(3000, []int{1}, many),
		"long comment":       append([]byte(long), commented(5, []int{2}, nil)...),
		"comment last":       append(commented(5, []int{2}, nil), "# HELP last no newline"...),
		"match into #":       []byte("a 0\na 0\na 0\n# HELP a b\n# TYPE a gauge\na 0\na 0\n# HELP a b\n#\n# \n"),
		"short match into #": []byte("abcdefgh 1\nabcdefgh 2\n# HELP z\nx\n# HELP z\n"),
	}
	names := []string{"families", "far apart", "reordered", "more families", "long comment", "comment last", "match into #", "short match into #"}
	var e encoder
	for round := range 2 {
		for i := range names {
			name := names[(i*3+round)%len(names)]
			src := bodies[name]
			z := e.appendGzip(nil, src)
			if got := gunzip(t, z); !bytes.Equal(got, src) {
				t.Fatalf("%s (round %d): %d bytes came back as %d different ones", name, round, len(src), len(got))
			}
			// What the cache holds from other bodies changes nothing
			// but for a body with more comment text than it keeps.
			var fresh encoder
			if again := fresh.appendGzip(nil, src); !bytes.Equal(again, z) && name != "more families" {
				t.Errorf("%s (round %d): the reused encoder wrote other bytes than a new one", name, round)
			}
		}
	}
	if n := len(e.headers.lines); n == 0 || e.headers.bytes > maxHeaderBytes+2*maxHeaderLine {
		t.Errorf("the cache holds %d lines, %d bytes", n, e.headers.bytes)
	}
}

// Once made, the cache's entries serve every body like the last ones: one
// with more comment text than the cache keeps (its first part), one with a
// comment line twice, and bodies that take turns.
func TestHeaderCacheSteady(t *testing.T) {
	dup := append(commented(30, []int{2}, nil), "# \n"...)
	dup = append(dup, commented(30, []int{2}, nil)...)
	subset := make([]int, 30)
	for i := range subset {
		subset[i] = 2 * i
	}
	for _, tc := range []struct {
		name   string
		bodies [][]byte
	}{
		{"past the bound", [][]byte{commented(2500, []int{1}, nil)}},
		{"a line twice", [][]byte{dup}},
		{"taking turns", [][]byte{commented(60, []int{2}, nil), commented(30, []int{2}, subset)}},
	} {
		var e encoder
		for round := range 4 {
			made := e.headers.made
			for _, src := range tc.bodies {
				if got := gunzip(t, e.appendGzip(nil, src)); !bytes.Equal(got, src) {
					t.Fatalf("%s: round %d: the body did not come back", tc.name, round)
				}
			}
			if n := e.headers.made - made; round > 0 && n != 0 {
				t.Errorf("%s: round %d made %d entries, want none", tc.name, round, n)
			}
		}
		if tc.name == "past the bound" && e.headers.bytes > maxHeaderBytes+64+8*maxHeaderLine {
			t.Errorf("%s: the cache made %d bytes", tc.name, e.headers.bytes)
		}
	}
}
