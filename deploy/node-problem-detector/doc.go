// Package npd holds the node-problem-detector monitor configs that ship
// with memfrag_exporter (a custom-plugin monitor running `memfrag_exporter
// inspect`, a kernel-log monitor for page allocation failures) and the test
// that runs them as node-problem-detector does.
package npd
