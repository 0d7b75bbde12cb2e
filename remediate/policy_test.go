package remediate

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecodeMessage(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		alerts  int
		wantErr string
	}{
		{"minimal", `{"version":"4","alerts":[{"status":"firing","labels":{}}]}`, 1, ""},
		{"no alerts", `{"version":"4","alerts":[]}`, 0, ""},
		{"unknown fields", `{"version":"4","groupKey":"x","truncatedAlerts":3,"routeLabels":{"a":"b"},"notification_reason":"new","status":"firing",
			"alerts":[{"status":"resolved","labels":{"a":"b"},"annotations":{"x":"y"},"startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-01T01:00:00Z","generatorURL":"http://p","fingerprint":"abc","extra":[1,{"z":null}]}]}`, 1, ""},
		{"wrong version", `{"version":"3","alerts":[]}`, 0, `version "3"`},
		{"no version", `{"alerts":[]}`, 0, `version ""`},
		{"no alerts field", `{"version":"4"}`, 0, "no alerts field"},
		{"null alerts", `{"version":"4","alerts":null}`, 0, "no alerts field"},
		{"bad status", `{"version":"4","alerts":[{"status":"pending","labels":{}}]}`, 0, `status "pending"`},
		{"no labels", `{"version":"4","alerts":[{"status":"firing"}]}`, 0, "has no labels"},
		{"label not a string", `{"version":"4","alerts":[{"status":"firing","labels":{"numa_node":1}}]}`, 0, "cannot unmarshal"},
		{"bad time", `{"version":"4","alerts":[{"status":"firing","labels":{},"startsAt":"yesterday"}]}`, 0, "cannot parse"},
		{"trailing data", `{"version":"4","alerts":[]} {}`, 0, "invalid character"},
		{"not JSON", `version=4`, 0, "invalid character"},
		{"empty", ``, 0, "unexpected end"},
		{"deep nesting", `{"version":"4","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `,"alerts":[]}`, 0, "exceeded max depth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alerts, err := decodeMessage([]byte(tc.body))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if len(alerts) != tc.alerts {
					t.Fatalf("%d alerts, want %d", len(alerts), tc.alerts)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errMalformed) {
				t.Fatalf("error %v, want one containing %q wrapping errMalformed", err, tc.wantErr)
			}
		})
	}
}

func TestHostPart(t *testing.T) {
	for in, want := range map[string]string{
		"node1:19710":                       "node1",
		"10.0.0.5:19710":                    "10.0.0.5",
		"[2001:db8::1]:19710":               "2001:db8::1",
		"[fe80::1%eth0]:19710":              "fe80::1%eth0",
		"2001:db8::1":                       "2001:db8::1",
		"[2001:db8::1]":                     "2001:db8::1",
		"node1":                             "node1",
		"https://node1:19710/metrics":       "node1",
		"http://user@node1.example.com/x?y": "node1.example.com",
		"":                                  "",
	} {
		if got := hostPart(in); got != want {
			t.Errorf("hostPart(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIdentity(t *testing.T) {
	id := &identity{nodeName: "k8s-node-7", names: map[string]bool{}}
	id.addName("k8s-node-7")
	id.addName("web1.dc1.example.com.")
	id.interfaces = func() ([]ifaceAddrs, error) {
		return []ifaceAddrs{
			{name: "eth0", flags: net.FlagUp, addrs: prefixes("10.1.2.3/24", "2001:db8::7/64")},
			{name: "lo", flags: net.FlagUp | net.FlagLoopback, addrs: prefixes("127.0.0.1/8")},
		}, nil
	}
	now := time.Now()
	for _, tc := range []struct {
		labels       map[string]string
		want, loopOK bool
	}{
		{map[string]string{"node": "k8s-node-7"}, true, true},
		{map[string]string{"node": "K8S-NODE-7"}, true, true},
		{map[string]string{"node": "k8s-node-8"}, false, false},
		// node alone decides: another node's name vetoes this host's address.
		{map[string]string{"node": "k8s-node-8", "instance": "10.1.2.3:19710"}, false, false},
		{map[string]string{"node": "k8s-node-8", "instance": "k8s-node-7:19710"}, false, false},
		{map[string]string{"node": "k8s-node-7", "instance": "10.9.9.9:19710"}, true, true},
		{map[string]string{"node": "", "instance": "10.1.2.3:19710"}, true, true},
		{map[string]string{"instance": "10.1.2.3:19710"}, true, true},
		{map[string]string{"instance": "10.1.2.4:19710"}, false, false},
		{map[string]string{"instance": "[2001:db8::7]:19710"}, true, true},
		{map[string]string{"instance": "[2001:db8:0:0::7]:19710"}, true, true},
		{map[string]string{"instance": "[::ffff:10.1.2.3]:19710"}, true, true},
		{map[string]string{"instance": "web1.dc1.example.com:19710"}, true, true},
		{map[string]string{"instance": "WEB1.dc1.example.com.:19710"}, true, true},
		{map[string]string{"instance": "web1:19710"}, true, true},
		{map[string]string{"instance": "web1.dc2.example.com:19710"}, false, false},
		{map[string]string{"instance": "k8s-node-7:19710"}, true, true},
		{map[string]string{"instance": "127.0.0.1:19710"}, false, true},
		{map[string]string{"instance": "[::1]:19710"}, false, true},
		{map[string]string{"instance": "localhost:19710"}, false, true},
		{map[string]string{"instance": "0.0.0.0:19710"}, false, false},
		{map[string]string{"instance": "web1\x00:19710"}, false, false},
		{map[string]string{"instance": ""}, false, false},
		{map[string]string{}, false, false},
	} {
		for _, loop := range []bool{false, true} {
			id.trustLoopback = loop
			want := tc.want
			if loop {
				want = tc.loopOK
			}
			if got, _ := id.matches(tc.labels, now); got != want {
				t.Errorf("trustLoopback=%v labels %q: match %v, want %v", loop, tc.labels, got, want)
			}
		}
	}
}

func TestValidNodeID(t *testing.T) {
	for _, s := range []string{"0", "1", "63", "1023"} {
		if !validNodeID(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range []string{"", "-1", "1e9", "../../..", "01", "+1", "1024", " 1", "1\x00", "0x1", "99999", "１"} {
		if validNodeID(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestPolicy walks one receiver through the checks in order, with the
// injected clock standing in for time.
func TestPolicy(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	clock := newFakeClock()
	cfg := testConfig(tr, clock)
	cfg.Actions = []Action{Compact, DropCachesThenCompact}
	r := newReceiver(t, cfg)
	other := map[string]string{"alertname": "X", "instance": "203.0.113.9:19710", "remediate": "compact", "fingerprint": "o"}
	steps := []struct {
		name    string
		advance time.Duration
		labels  map[string]string
		want    string
	}{
		{"resolved", 0, alertFor("compact", "f0", "status", "resolved"), "skipped:resolved"},
		{"no action label", 0, map[string]string{"node": testNode}, "skipped:invalid"},
		{"unknown action", 0, alertFor("reboot", "f0"), "skipped:invalid"},
		{"numa_node path", 0, alertFor("compact", "f0", "numa_node", "../../.."), "skipped:invalid"},
		{"numa_node negative", 0, alertFor("compact", "f0", "numa_node", "-1"), "skipped:invalid"},
		{"numa_node exponent", 0, alertFor("compact", "f0", "numa_node", "1e9"), "skipped:invalid"},
		{"numa_node absent here", 0, alertFor("compact", "f0", "numa_node", "7"), "skipped:invalid"},
		{"zone absent here", 0, alertFor("compact", "f0", "zone", "Movable"), "skipped:invalid"},
		{"zone absent on node", 0, alertFor("compact", "f0", "numa_node", "1", "zone", "DMA32"), "skipped:invalid"},
		{"NUL in action", 0, alertFor("compact\x00", "f0"), "skipped:invalid"},
		{"other host", 0, other, "skipped:other_host"},
		{"not allowed", 0, alertFor("drop_caches", "f0"), "skipped:not_allowed"},
		{"accepted", 0, alertFor("compact", "f1"), "accepted"},
		{"retry is a duplicate", time.Minute, alertFor("compact", "f1"), "skipped:duplicate"},
		{"new alert in cooldown", 0, alertFor("compact", "f2"), "skipped:cooldown"},
		// One cooldown per piece of memory: a global compaction touched all
		// of it, whatever the next action is.
		{"other action, same memory", 0, alertFor("drop_caches_then_compact", "f3"), "skipped:cooldown"},
		{"one node of the same memory", 0, alertFor("compact", "f4", "numa_node", "1"), "skipped:cooldown"},
		// The static fixture gains nothing: the next run waits two cooldowns;
		// the repeat of the accepted alert is still coalesced meanwhile.
		{"cooldown over, but backoff", 30 * time.Minute, alertFor("compact", "f6"), "skipped:backoff"},
		{"repeat during backoff", 0, alertFor("compact", "f1"), "skipped:duplicate"},
		// Once the wait is over, a still-firing alert that Alertmanager
		// repeats is decided anew (and re-checked).
		{"repeat after the wait", 30 * time.Minute, alertFor("compact", "f1"), "accepted"},
		{"backoff doubled", 61 * time.Minute, alertFor("compact", "f8"), "skipped:backoff"},
		{"doubled backoff over", 60 * time.Minute, alertFor("compact", "f9", "numa_node", "1"), "accepted"},
		// Node 1's compaction touched node 1 only: node 0 may still have
		// its own, but a global action touches node 1 too.
		{"node 0 is other memory", 0, alertFor("compact", "f10", "numa_node", "0"), "accepted"},
		{"global waits for the nodes", 0, alertFor("drop_caches_then_compact", "f11"), "skipped:cooldown"},
		{"same fingerprint, new startsAt", 31 * time.Minute, alertFor("compact", "f9", "numa_node", "1", "startsAt", "2026-03-01T18:00:00Z"), "skipped:backoff"},
		{"resolved never acts", 8 * time.Hour, alertFor("compact", "f12", "status", "resolved"), "skipped:resolved"},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		got := decideOne(t, r, s.labels)
		r.wg.Wait() // let an accepted action end before the next step
		if got != s.want {
			t.Fatalf("%s: got %s, want %s", s.name, got, s.want)
		}
	}
}

func TestNotNeeded(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		labels  map[string]string
		want    string
	}{
		{"buddyinfo-healthy", alertFor("compact", "a"), "skipped:not_needed"},
		{"buddyinfo-healthy", alertFor("compact", "a", "numa_node", "1"), "skipped:not_needed"},
		{"buddyinfo-dma-fragmented", alertFor("compact", "a"), "skipped:not_needed"},
		{"buddyinfo-dma-fragmented", alertFor("compact", "a", "zone", "DMA"), "accepted"},
		{"buddyinfo-dma-fragmented", alertFor("compact", "a", "zone", "Normal"), "skipped:not_needed"},
		{"buddyinfo-fragmented", alertFor("compact", "a", "numa_node", "1"), "accepted"},
		{"buddyinfo-fragmented", alertFor("drop_caches", "a"), "accepted"},
	} {
		tr := newTree(t, tc.fixture)
		r := newReceiver(t, testConfig(tr, newFakeClock()))
		if got := decideOne(t, r, tc.labels); got != tc.want {
			t.Errorf("%s %v: got %s, want %s", tc.fixture, tc.labels, got, tc.want)
		}
	}
}

func TestThresholdAgreesWithAlertRule(t *testing.T) {
	// The alert rule compares the exported index (thousandths / 1000) with
	// the threshold using >=; the receiver must draw the line at the same
	// thousandth.
	for _, tc := range []struct {
		threshold float64
		milli     int64
	}{{0.9, 900}, {0, 0}, {1, 1000}, {0.9005, 901}, {0.123, 123}} {
		tr := newTree(t, "buddyinfo-healthy")
		cfg := testConfig(tr, newFakeClock())
		cfg.UnusableThreshold = tc.threshold
		r := newReceiver(t, cfg)
		if r.thresholdMilli != tc.milli {
			t.Errorf("threshold %v: %d thousandths, want %d", tc.threshold, r.thresholdMilli, tc.milli)
		}
	}
}

func TestBackoffSaturates(t *testing.T) {
	if got := backoff(time.Duration(1<<62), 4); got != time.Duration(1<<63-1) {
		t.Errorf("backoff overflowed to %v", got)
	}
	if got := backoff(30*time.Minute, 4); got != 8*time.Hour {
		t.Errorf("backoff(30m, 4) = %v, want 8h", got)
	}
}

func TestConfigRejects(t *testing.T) {
	tr := newTree(t, "buddyinfo-healthy")
	for name, mod := range map[string]func(*Config){
		"no token":         func(c *Config) { c.AllowUnauthenticated = false },
		"missing token":    func(c *Config) { c.TokenFile = "/nonexistent/token" },
		"unknown action":   func(c *Config) { c.Actions = []Action{"reboot"} },
		"level 4":          func(c *Config) { c.DropCachesLevel = 4 },
		"order 40":         func(c *Config) { c.Order = 40 },
		"threshold 1.5":    func(c *Config) { c.UnusableThreshold = 1.5 },
		"negative timeout": func(c *Config) { c.Timeout = -time.Second },
		"page size 3000":   func(c *Config) { c.PageSize = 3000 },
	} {
		cfg := testConfig(tr, newFakeClock())
		mod(&cfg)
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	if _, err := ParseActions([]string{"compact", "", "drop_caches"}); err != nil {
		t.Errorf("ParseActions: %v", err)
	}
	if _, err := ParseActions([]string{"compact", "reboot"}); err == nil {
		t.Error("ParseActions accepted reboot")
	}
}

// A sender without fingerprints (not Alertmanager) is deduplicated by the
// alert's labels and startsAt.
func TestDedupeWithoutFingerprint(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	r := newReceiver(t, testConfig(tr, newFakeClock()))
	a := map[string]string{"alertname": "A", "node": testNode, "remediate": "compact"}
	if got := decideOne(t, r, a); got != "accepted" {
		t.Fatal(got)
	}
	r.wg.Wait()
	if got := decideOne(t, r, a); got != "skipped:duplicate" {
		t.Fatalf("same labels and startsAt again: %s, want skipped:duplicate", got)
	}
	b := map[string]string{"alertname": "B", "node": testNode, "remediate": "compact"}
	if got := decideOne(t, r, b); got != "skipped:cooldown" {
		t.Fatalf("other labels: %s, want skipped:cooldown", got)
	}
}

// Link-local addresses are not this host's in particular: NodeLocal
// DNSCache puts 169.254.20.10 on every Kubernetes node, and the same
// 169.254/16 or fe80:: address can sit on many hosts' links. An instance
// naming one must not make every node that receives the alert act.
func TestIdentityIgnoresLinkLocal(t *testing.T) {
	id := &identity{nodeName: "k8s-node-7", names: map[string]bool{}}
	id.interfaces = func() ([]ifaceAddrs, error) {
		return []ifaceAddrs{{name: "eth0", flags: net.FlagUp, addrs: prefixes("10.1.2.3/24", "169.254.20.10/16", "fe80::1/64")}}, nil
	}
	now := time.Now()
	for inst, want := range map[string]bool{
		"10.1.2.3:19710":         true,
		"169.254.20.10:19710":    false,
		"[fe80::1]:19710":        false,
		"[fe80::1%eth0]:19710":   false,
		"[::ffff:169.254.20.10]": false,
	} {
		if got, _ := id.matches(map[string]string{"instance": inst}, now); got != want {
			t.Errorf("instance %q: match %v, want %v", inst, got, want)
		}
	}
}

func prefixes(list ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(list))
	for i, s := range list {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Addresses that sit on many hosts do not make an alert this host's:
// docker0's 172.17.0.1, kube-ipvs0's Service ClusterIPs, a dummy device's
// address, a floating /32 VIP next to the interface's subnet address, and
// the addresses of an interface that is down. A cloud VM whose only address
// is a /32 keeps it.
func TestIdentityIgnoresSharedAddresses(t *testing.T) {
	id := &identity{nodeName: "k8s-node-7", names: map[string]bool{}}
	id.interfaces = func() ([]ifaceAddrs, error) {
		return []ifaceAddrs{
			{name: "eth0", flags: net.FlagUp, addrs: prefixes("10.1.2.3/24", "10.1.2.100/32", "2001:db8::7/64", "2001:db8::100/128")},
			{name: "ens4", flags: net.FlagUp, addrs: prefixes("10.128.0.2/32")},
			{name: "docker0", flags: net.FlagUp, addrs: prefixes("172.17.0.1/16")},
			{name: "kube-ipvs0", flags: net.FlagUp, addrs: prefixes("10.96.0.1/32", "10.96.0.10/32")},
			{name: "cni0", flags: net.FlagUp, addrs: prefixes("10.244.3.1/24")},
			{name: "nodelocaldns", flags: net.FlagUp, addrs: prefixes("169.254.20.10/32", "10.96.0.11/32")},
			{name: "eth1", flags: 0, addrs: prefixes("192.168.50.7/24")},
		}, nil
	}
	now := time.Now()
	for _, tc := range []struct {
		inst string
		want bool
	}{
		{"10.1.2.3:19710", true},
		{"[2001:db8::7]:19710", true},
		{"10.128.0.2:19710", true},
		{"10.1.2.100:19710", false},
		{"[2001:db8::100]:19710", false},
		{"172.17.0.1:19710", false},
		{"10.96.0.1:19710", false},
		{"10.96.0.10:9153", false},
		{"10.244.3.1:19710", false},
		{"10.96.0.11:19710", false},
		{"192.168.50.7:19710", false},
	} {
		if got, _ := id.matches(map[string]string{"instance": tc.inst}, now); got != tc.want {
			t.Errorf("instance %q: match %v, want %v", tc.inst, got, tc.want)
		}
	}
}

// Without the per-node compact files (no CONFIG_NUMA, or a sysfs mount
// without them) a numa_node alert compacts the whole machine through
// /proc/sys/vm/compact_memory: alerts for node 0 and node 1 are then the
// same action and share one cooldown, not one each.
func TestCooldownFollowsTheFileWritten(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	for _, n := range []string{"node0", "node1"} {
		if err := os.Remove(filepath.Join(tr.sys, "devices/system/node", n, "compact")); err != nil {
			t.Fatal(err)
		}
	}
	r := newReceiver(t, testConfig(tr, newFakeClock()))
	if got := decideOne(t, r, alertFor("compact", "a", "numa_node", "0")); got != "accepted" {
		t.Fatalf("node 0: %s, want accepted", got)
	}
	r.wg.Wait()
	if got := decideOne(t, r, alertFor("compact", "b", "numa_node", "1")); got != "skipped:cooldown" {
		t.Fatalf("node 1 right after a global compaction: %s, want skipped:cooldown", got)
	}
	if got := decideOne(t, r, alertFor("compact", "c")); got != "skipped:cooldown" {
		t.Fatalf("global compaction right after one: %s, want skipped:cooldown", got)
	}
	if w := tr.written(t); len(w) != 1 || w["proc/sys/vm/compact_memory"] != "1\n" {
		t.Errorf("written %q, want one global compaction", w)
	}
}

// The dedupe set forgets the oldest accepted alerts beyond dedupeSize: its
// memory stays bounded over months of alerts, and what it still holds is
// the newest. (TestRecentKeepsActionsThroughFloods accepts one alert, so it
// cannot reach the bound.)
func TestDedupeSetIsBounded(t *testing.T) {
	tr := newTree(t, "buddyinfo-fragmented")
	r := newReceiver(t, testConfig(tr, newFakeClock()))
	key := func(i int) [32]byte {
		return dedupeKey(&alert{Fingerprint: fmt.Sprintf("f%d", i)})
	}
	const n = 3*dedupeSize + 7
	r.mu.Lock()
	for i := range n {
		r.remember(key(i), scopeAll)
	}
	seen, fifo := len(r.seen), len(r.seenFIFO)
	has := func(i int) bool { _, ok := r.seen[key(i)]; return ok }
	oldest, newest, firstKept, lastForgotten := has(0), has(n-1), has(n-dedupeSize), has(n-dedupeSize-1)
	r.mu.Unlock()
	if seen != dedupeSize || fifo != dedupeSize {
		t.Fatalf("after %d alerts the set holds %d (FIFO %d), want %d", n, seen, fifo, dedupeSize)
	}
	if oldest || lastForgotten || !newest || !firstKept {
		t.Errorf("oldest kept %v, last forgotten kept %v, newest kept %v, first kept %v", oldest, lastForgotten, newest, firstKept)
	}
}
