// Package remediate is the Alertmanager webhook receiver that cures memory
// fragmentation on its own node: it takes POST /remediate, decides for every
// alert whether to act (is it for this host, is the action allowed, is it a
// duplicate, is another action running, is the action cooling down, does the
// node still need it) and, when it accepts, runs the action in the background
// as plain writes to kernel files (/proc/sys/vm/drop_caches,
// /proc/sys/vm/compact_memory, /sys/devices/system/node/node<N>/compact).
//
// It is built to fail closed. Anything it cannot authenticate, parse or
// measure is not acted on, and every decision is answered in the reply,
// logged once and counted, so the receiver is never silent about what it did.
// Replies are 2xx for every policy decision, since Alertmanager retries 5xx
// and a retry must not turn into a second action.
//
// The re-check before acting and the gain measured after it use the
// fragmentation package, the same math the collectors and the shipped alert
// rules use: an alert fires, and the receiver acts, on the same number.
package remediate
