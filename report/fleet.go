package report

import (
	"html"
	"strconv"
	"time"
)

// FleetBudget is the fleet-wide bound on concurrent remediations as the page
// shows it: the budget and who holds its slots (Leases).
type FleetBudget struct {
	MaxConcurrent int
	Namespace     string
	Slots         []FleetSlot
}

// FleetSlot is one slot Lease.
type FleetSlot struct {
	Name      string
	Holder    string    // empty when free
	RenewTime time.Time // zero when never renewed
	Expired   bool      // held but not renewed within its duration
	Err       string    // the slot could not be read
}

func (r *renderer) fleet(f *FleetBudget) {
	r.printf(`<section id="fleet-budget"><h3>Fleet budget</h3><p>At most <b class="fleet-max">%d</b> node(s) of the fleet remediate at once; slots are the Leases below in namespace <code>%s</code>.</p>`,
		f.MaxConcurrent, html.EscapeString(f.Namespace))
	r.str(`<table class="fleet-slots"><thead><tr><th>lease</th><th>holder</th><th>last renewal</th></tr></thead><tbody>`)
	for _, s := range f.Slots {
		holder := html.EscapeString(s.Holder)
		switch {
		case s.Err != "":
			holder = `<span class="error">cannot read: ` + html.EscapeString(s.Err) + `</span>`
		case s.Holder == "":
			holder = "free"
		case s.Expired:
			holder += " (expired: free for the next node)"
		}
		renewed := "—"
		if !s.RenewTime.IsZero() {
			renewed = s.RenewTime.UTC().Format(time.RFC3339)
		}
		r.printf(`<tr><td>%s</td><td>%s</td><td>%s</td></tr>`, html.EscapeString(s.Name), holder, renewed)
	}
	r.str(`</tbody></table><p class="hint">` + strconv.Itoa(len(f.Slots)) + ` slot(s), read from the API server at most every 5 s.</p></section>`)
}
