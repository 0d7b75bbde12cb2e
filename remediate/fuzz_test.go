package remediate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	b, err := os.ReadFile("testdata/alertmanager-0.31-payload.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add(payload(alertFor("compact", "a", "numa_node", "1", "zone", "Normal")))
	f.Add(payload(alertFor("drop_caches", "a", "status", "resolved"), alertFor("x", "b")))
	f.Add(`{"version":"4","alerts":[{"status":"firing","labels":{"remediate":"compact","instance":"[::1]:19710"}}]}`)
	f.Add(`{"version":"4","alerts":[{"status":"firing","labels":{"numa_node":"../../..","remediate":"compact","node":"node-a"}}]}`)
	f.Add(`{"version":"4","alerts":null}`)
	f.Add(`[[[[[[`)
	f.Add(``)
}

// FuzzDecode: the decoder never panics, and whatever it accepts is a v4
// payload whose alerts all have a status and labels.
func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, body string) {
		alerts, err := decodeMessage([]byte(body))
		if err != nil {
			if alerts != nil {
				t.Fatal("alerts returned with an error")
			}
			return
		}
		for _, a := range alerts {
			if a.Status != "firing" && a.Status != "resolved" || a.Labels == nil {
				t.Fatalf("accepted alert %+v", a)
			}
		}
	})
}

// FuzzHandler: any body gets a 200, 400 or 413 with a JSON reply, never a
// 5xx; a 200 has one decision per alert, each accepted or skipped with a
// known reason; nothing is ever written for an alert of another host.
func FuzzHandler(f *testing.F) {
	fuzzSeeds(f)
	tr := newTree(f, "buddyinfo-fragmented")
	cfg := testConfig(tr, newFakeClock())
	cfg.MaxBodyBytes = 64 << 10
	cfg.Actions = []Action{Compact}
	r := newReceiver(f, cfg)
	reasons := map[string]bool{}
	for _, s := range skipReasons {
		reasons[s] = true
	}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/remediate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("reply is not JSON: %q", w.Body)
		}
		switch w.Code {
		case 200:
		case 400, 413:
			return
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
		var rep reply
		if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		alerts, err := decodeMessage([]byte(body))
		if err != nil || len(alerts) != len(rep.Decisions) {
			t.Fatalf("%d decisions for %d alerts (%v)", len(rep.Decisions), len(alerts), err)
		}
		for i, d := range rep.Decisions {
			switch {
			case d.Decision == decisionAccepted && d.Reason == "":
				if d.Action != string(Compact) {
					t.Fatalf("accepted action %q outside the allowlist", d.Action)
				}
				if ok, _ := r.id.matches(alerts[i].Labels, r.now()); !ok {
					t.Fatalf("accepted an alert for another host: %q", alerts[i].Labels)
				}
			case d.Decision == decisionSkipped && reasons[d.Reason]:
			default:
				t.Fatalf("decision %+v", d)
			}
		}
		r.wg.Wait()
	})
}
