package report

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/memfrag/memfrag_exporter/fragmentation"
)

// TestRenderFleet: the fleet section shows the budget, each slot's holder or
// that it is free, expired or unreadable, and keeps API-sourced text as text
// (holder identities are whatever a Lease says).
func TestRenderFleet(t *testing.T) {
	zones := []fragmentation.Zone{{Node: "0", Name: "Normal", Free: []uint64{1, 2, 3}}}
	s := &Snapshot{PageSize: 4096, ScoreOrder: 9, Proactiveness: -1}
	s.fill(zones, nil, errors.New("no zoneinfo"), nil)
	for _, tc := range []struct {
		name  string
		fleet *FleetBudget
		want  []string
		not   []string
	}{
		{"off", nil, nil, []string{`id="fleet-budget"`}},
		{"held and free", &FleetBudget{MaxConcurrent: 2, Namespace: "monitoring", Slots: []FleetSlot{
			{Name: "memfrag-remediation-0", Holder: "node-a", RenewTime: fixedNow},
			{Name: "memfrag-remediation-1"},
		}}, []string{`<b class="fleet-max">2</b>`, "<code>monitoring</code>", "<td>memfrag-remediation-0</td><td>node-a</td><td>2026-11-28T08:00:00Z</td>",
			"<td>memfrag-remediation-1</td><td>free</td><td>—</td>"}, nil},
		{"expired and unreadable", &FleetBudget{MaxConcurrent: 2, Namespace: "ns", Slots: []FleetSlot{
			{Name: "s-0", Holder: "dead-node", RenewTime: fixedNow, Expired: true},
			{Name: "s-1", Err: "GET lease: 403 Forbidden"},
		}}, []string{"dead-node (expired: free for the next node)", "cannot read: GET lease: 403 Forbidden"}, nil},
		{"escaped", &FleetBudget{MaxConcurrent: 1, Namespace: "<ns>", Slots: []FleetSlot{{Name: "s-0", Holder: `<script>x</script>`}}},
			[]string{"&lt;script&gt;x&lt;/script&gt;", "&lt;ns&gt;"}, []string{"<script>x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderHTML(&buf, s, RenderOptions{Order: 2, Now: fixedNow, Fleet: tc.fleet}); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("has %q", n)
				}
			}
		})
	}
}
