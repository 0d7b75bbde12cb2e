package fastgzip

import (
	"encoding/binary"
	"slices"
)

// maxHeaderLine is the longest comment line whose tokens are kept; longer
// ones are tokenized as any other text.
const maxHeaderLine = 1024

// maxHeaderBytes bounds what a headerCache makes between two times it
// starts over (its lines, tokens and entries, live or replaced): past it,
// lines are tokenized as any other text. It starts over before a body when
// the last body found it full and used less than half of it.
const maxHeaderBytes = 256 << 10

// maxVariants is how many entries a line's text keeps, each made after
// other lines: the same text twice in a body, or bodies that take turns
// (a full scrape and a filtered one) each keep theirs.
const maxVariants = 4

// headHashBits sizes makeHeader's table of earlier positions.
const headHashBits = 10

// ringLines is how many comment lines before a line its kept tokens may
// match: help texts repeat phrases of their neighbours'.
const ringLines = 31

// A headerCache keeps the tokens of comment lines. An exposition's # HELP
// and # TYPE lines are the same from one scrape to the next, and nearly
// half of the tokens of a body (literals of help text, mostly): tokenizing
// them costs about 10 ns a token, copying them from here about 2. A line's
// tokens are made against the comment lines before it (a TYPE line's name
// matches its HELP line's, a HELP line's "# HELP memfrag_" the lines
// above): a match into one of those is kept relative to it and placed
// where that line is in each body. The tokens are used only after the
// same lines as when they were made: each entry knows the entry of the
// comment line before it, which knew its own.
type headerCache struct {
	lines   map[string]*headerTokens
	bytes   int  // made since it started over, see maxHeaderBytes
	entries int  // made since it started over
	used    int  // entries used in this body
	refused bool // a line was not kept in this body for want of room
	made    int  // entries made, ever
	// scratch of makeHeader
	buf   []byte
	head  [1 << headHashBits]int32
	chain []int32
}

type headerTokens struct {
	prev *headerTokens // the comment line before when these were made
	next *headerTokens // the entry for the same text after another line
	toks []uint32      // the line's tokens; those into lines before are placed by ctx
	lit  []uint16      // each token's literal/length symbol
	dist []uint8       // the distance codes of its matches within the line
	ctx  []ctxMatch    // its matches into the lines before
	far  int           // the farthest line before that a match reaches, 0 for none
}

// A ctxMatch is a kept match whose text is in a comment line before.
type ctxMatch struct {
	i      uint16 // in toks
	before uint8  // the line it is in: 1 the one just before
	n      uint8  // length-3
	dist   uint16 // from the line's start in those lines and the line written one after the other
}

// headerRing is where the comment lines before are in a body, newest
// first.
type headerRing struct {
	start, end [ringLines]int // a line and its newline+1
	n          int
	last       *headerTokens
}

func (r *headerRing) push(start, end int, h *headerTokens) {
	copy(r.start[1:], r.start[:ringLines-1])
	copy(r.end[1:], r.end[:ringLines-1])
	r.start[0], r.end[0] = start, end
	r.n = min(r.n+1, ringLines)
	r.last = h
}

// startBody starts the cache over if the last body found it full of what
// it did not use.
func (c *headerCache) startBody() {
	if c.refused && c.used*2 < c.entries {
		clear(c.lines)
		c.bytes, c.entries = 0, 0
	}
	c.used, c.refused = 0, false
}

// header appends the kept tokens of the comment line at cur to toks,
// counting their symbols, and pushes it on m.hdr. When the line is not
// kept (too long, no newline, no room, text it matches too far back) it
// does nothing but empty m.hdr; it returns full, appending nothing, when
// the tokens do not fit in the block.
func (e *encoder) header(toks []uint32, m *matcher, cur, nl int) (_ []uint32, kept, full bool) {
	src, r := m.src, &m.hdr
	if nl >= len(src) || nl-cur >= maxHeaderLine {
		*r = headerRing{}
		return toks, false, false
	}
	line := src[cur : nl+1]
	c := &e.headers
	first := c.lines[string(line)]
	h := first
	for n := 0; h != nil && h.prev != r.last; n++ {
		if n == maxVariants-1 {
			h.next = nil // the oldest goes
		}
		h = h.next
	}
	if h == nil {
		if c.bytes > maxHeaderBytes {
			c.refused = true
			*r = headerRing{}
			return toks, false, false
		}
		if c.lines == nil {
			c.lines = make(map[string]*headerTokens)
		}
		h = c.makeHeader(src, r, line)
		h.next = first
		c.lines[string(line)] = h
		c.bytes += 64 + len(line) + 7*len(h.toks) + 8*len(h.ctx)
		c.entries++
		c.made++
	}
	c.used++
	if h.far > 0 && nl+1-r.start[h.far-1] > maxDist {
		*r = headerRing{}
		return toks, false, false
	}
	if len(toks)+len(h.toks) > maxTokens {
		return toks, false, true
	}
	// What to add to a distance into each line before.
	var adj [ringLines + 1]int
	off := 0 // where line i before starts in the lines written one after the other, from the line's start back
	for i := 1; i <= h.far; i++ {
		off += r.end[i-1] - r.start[i-1]
		adj[i] = cur - r.start[i-1] - off
	}
	base := len(toks)
	toks = append(toks, h.toks...)
	lf, df := &e.litFreq, &e.distFreq
	for _, s := range h.lit {
		lf[s]++
	}
	for _, d := range h.dist {
		df[d]++
	}
	for _, c := range h.ctx {
		dist := int(c.dist) + adj[c.before]
		dc := distCode(dist)
		toks[base+int(c.i)] = matchFlag | uint32(dc)<<23 | uint32(c.n)<<15 | uint32(dist-1)
		df[dc]++
	}
	r.push(cur, nl+1, h)
	return toks, true, false
}

// makeHeader tokenizes line after the comment lines of r, greedily with
// the longest match among every earlier position of the same 4 bytes (it
// runs once per line and lines before). A match into a line before ends
// within it: in a body, other text may follow it.
func (c *headerCache) makeHeader(src []byte, r *headerRing, line []byte) *headerTokens {
	buf := c.buf[:0]
	var ends [ringLines + 1]int // where each line before ends in buf, oldest first
	for i := r.n - 1; i >= 0; i-- {
		buf = append(buf, src[r.start[i]:r.end[i]]...)
		ends[r.n-1-i] = len(buf)
	}
	q0 := len(buf)
	buf = append(buf, line...)
	end := len(buf)
	buf = append(buf, make([]byte, 8)...) // room to read 4 bytes anywhere
	c.buf = buf
	// Earlier positions by their 4 bytes, newest first: head[hash] and
	// chain[position] are position+1, 0 ending the list.
	clear(c.head[:])
	chain := slices.Grow(c.chain[:0], end)[:end]
	c.chain = chain
	insert := func(i int) {
		k := hash4(binary.LittleEndian.Uint32(buf[i:]), headHashBits)
		chain[i] = c.head[k]
		c.head[k] = int32(i + 1)
	}
	for i := 0; i < q0; i++ {
		insert(i)
	}
	h := &headerTokens{prev: r.last}
	for q := q0; q < end; {
		best, from := 0, 0
		x := binary.LittleEndian.Uint32(buf[q:])
		for s := int(c.head[hash4(x, headHashBits)]) - 1; s >= 0; s = int(chain[s]) - 1 {
			limit := min(maxMatch, end-q)
			if j := lineOf(ends[:r.n], s); j < r.n {
				limit = min(limit, ends[j]-s)
			}
			if limit < minMatch || limit <= best || binary.LittleEndian.Uint32(buf[s:]) != x {
				continue
			}
			if n := matchLen(buf[s:], buf[q:end], limit); n > best {
				best, from = n, s // the nearest of the longest: newest first
			}
		}
		n := 1
		switch in := r.n - lineOf(ends[:r.n], from); {
		case best < minMatch:
			h.toks = append(h.toks, uint32(buf[q]))
			h.lit = append(h.lit, uint16(buf[q]))
		case in > 0:
			h.ctx = append(h.ctx, ctxMatch{i: uint16(len(h.toks)), before: uint8(in), n: uint8(best - 3), dist: uint16(q - from)})
			h.toks = append(h.toks, 0) // placed when written
			h.lit = append(h.lit, 257+uint16(lengthCode[best-3]))
			h.far = max(h.far, in)
			n = best
		default:
			dc := distCode(q - from)
			h.toks = append(h.toks, matchFlag|uint32(dc)<<23|uint32(best-3)<<15|uint32(q-from-1))
			h.lit = append(h.lit, 257+uint16(lengthCode[best-3]))
			h.dist = append(h.dist, uint8(dc))
			n = best
		}
		for ; n > 0; n-- {
			insert(q)
			q++
		}
	}
	return h
}

// lineOf is the index of the line position s is in, by ends (each line's
// end, in order), len(ends) past them.
func lineOf(ends []int, s int) int {
	j := 0
	for j < len(ends) && s >= ends[j] {
		j++
	}
	return j
}
