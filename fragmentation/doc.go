// Package fragmentation turns the buddy allocator's free lists (/proc/buddyinfo)
// into the figures the kernel itself uses to judge fragmentation: the
// fragmentation index and unusable-free index of mm/vmstat.c and the
// proactive-compaction score of mm/compaction.c.
//
// The collectors, the remediation receiver and the inspect command all use this
// one package, so the number an alert fires on, the number the receiver
// re-checks before acting and the number a person sees on the node are the
// same number. The math repeats the kernel's integer arithmetic so that results
// equal what debugfs prints (/sys/kernel/debug/extfrag/*), not merely approach it.
package fragmentation
