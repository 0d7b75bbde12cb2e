// Package report shows a machine's memory fragmentation to a person: it reads
// buddyinfo and zoneinfo once, judges every zone with one verdict rule, and
// renders the result as the exporter's live landing page (HTML with inline
// SVG charts) or as the inspect command's table and JSON.
//
// The page and the inspect command share the reading, the verdict and the
// wording, so what an SRE sees in a browser and what a deploy gate acts on
// never disagree. All figures come from package fragmentation, the same
// functions the collectors export and the remediation receiver re-checks.
package report
