package fleet

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The tests of the budget run against a real kube-apiserver only: no mock
// decides whether the client works. e2e/70-fleet.sh starts one (etcd plus
// the apiserver built from the module proxy, e2e/lib/kube-apiserver.sh) and
// runs them with these variables set; elsewhere they skip, or fail when
// MEMFRAG_REQUIRE_KUBE=1.
type kube struct {
	t     testing.TB
	url   string
	ca    string
	admin string
	http  *http.Client
}

func needKube(t testing.TB) *kube {
	t.Helper()
	k := &kube{t: t, url: os.Getenv("MEMFRAG_KUBE_URL"), ca: os.Getenv("MEMFRAG_KUBE_CA"), admin: os.Getenv("MEMFRAG_KUBE_ADMIN_TOKEN")}
	if k.url == "" || k.ca == "" || k.admin == "" {
		if os.Getenv("MEMFRAG_REQUIRE_KUBE") != "" {
			t.Fatal("MEMFRAG_REQUIRE_KUBE is set but MEMFRAG_KUBE_URL/CA/ADMIN_TOKEN are not")
		}
		t.Skip("no kube-apiserver (run e2e/70-fleet.sh, which starts one)")
	}
	pem, err := os.ReadFile(k.ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	k.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return k
}

// call sends an admin request; want is the expected status.
func (k *kube) call(method, path string, body any, want int) []byte {
	k.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, k.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+k.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.http.Do(req)
	if err != nil {
		k.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		k.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	return data
}

// namespace creates a fresh namespace with the receiver's Role (the verbs
// deploy/kubernetes/remediation grants) bound to a service account, and
// returns the namespace and a token of that account from the TokenRequest
// API in a file.
func (k *kube) namespace(name string) (ns, tokenFile string) {
	k.t.Helper()
	ns = fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e9)
	k.call("POST", "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns}}, 201)
	k.t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", k.url+"/api/v1/namespaces/"+ns, nil)
		req.Header.Set("Authorization", "Bearer "+k.admin)
		if resp, err := k.http.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	k.call("POST", "/api/v1/namespaces/"+ns+"/serviceaccounts", map[string]any{"metadata": map[string]any{"name": "memfrag-exporter"}}, 201)
	k.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/"+ns+"/roles", map[string]any{
		"metadata": map[string]any{"name": "memfrag-exporter-fleet"},
		"rules": []any{map[string]any{"apiGroups": []string{"coordination.k8s.io"}, "resources": []string{"leases"},
			"verbs": []string{"get", "list", "watch", "create", "update", "patch"}}},
	}, 201)
	k.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/"+ns+"/rolebindings", map[string]any{
		"metadata": map[string]any{"name": "memfrag-exporter-fleet"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "memfrag-exporter-fleet"},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "memfrag-exporter", "namespace": ns}},
	}, 201)
	return ns, k.token(ns, "memfrag-exporter")
}

func (k *kube) token(ns, sa string) string {
	k.t.Helper()
	data := k.call("POST", "/api/v1/namespaces/"+ns+"/serviceaccounts/"+sa+"/token",
		map[string]any{"spec": map[string]any{"expirationSeconds": 3600}}, 201)
	var tr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(data, &tr); err != nil || tr.Status.Token == "" {
		k.t.Fatalf("TokenRequest: %v %s", err, data)
	}
	f := filepath.Join(k.t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(tr.Status.Token+"\n"), 0o600); err != nil {
		k.t.Fatal(err)
	}
	return f
}

func (k *kube) budget(ns, token, id string, n int, mod func(*Config)) *Budget {
	k.t.Helper()
	cfg := Config{MaxConcurrent: n, LeaseDuration: 3 * time.Second, Wait: 20 * time.Second, Identity: id,
		PollInterval: 200 * time.Millisecond,
		Client:       ClientConfig{APIServer: k.url, CAFile: k.ca, TokenFile: token, Namespace: ns}}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg, nil)
	if err != nil {
		k.t.Fatal(err)
	}
	return b
}

func (k *kube) lease(ns, name string) *Lease {
	k.t.Helper()
	l, err := decodeLease(k.call("GET", "/apis/coordination.k8s.io/v1/namespaces/"+ns+"/leases/"+name, nil, 200))
	if err != nil {
		k.t.Fatal(err)
	}
	return l
}

// TestBudgetBoundsConcurrency races more nodes than slots: never more than N
// hold at once, N do at some point, and every node gets its turn.
func TestBudgetBoundsConcurrency(t *testing.T) {
	k := needKube(t)
	for _, tc := range []struct{ nodes, slots int }{{6, 2}, {5, 1}, {3, 3}} {
		t.Run(fmt.Sprintf("%d_nodes_%d_slots", tc.nodes, tc.slots), func(t *testing.T) {
			ns, tok := k.namespace("budget")
			var cur, peak atomic.Int64
			errs := make(chan error, tc.nodes)
			for i := range tc.nodes {
				b := k.budget(ns, tok, fmt.Sprintf("node-%d", i), tc.slots, nil)
				go func() {
					s, err := b.Acquire(t.Context())
					if err != nil {
						errs <- fmt.Errorf("node-%d: %w", i, err)
						return
					}
					n := cur.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					time.Sleep(400 * time.Millisecond)
					cur.Add(-1)
					s.Release()
					errs <- nil
				}()
			}
			for range tc.nodes {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			t.Logf("peak concurrent holders %d of budget %d", peak.Load(), tc.slots)
			if peak.Load() > int64(tc.slots) || peak.Load() < int64(min(tc.slots, tc.nodes)) {
				t.Errorf("peak concurrent holders %d, want exactly %d", peak.Load(), tc.slots)
			}
			for i := range tc.slots {
				if h := k.lease(ns, slotName(DefaultLeasePrefix, i)).Spec.Holder(); h != "" {
					t.Errorf("slot %d still held by %q after every release", i, h)
				}
			}
		})
	}
}

// TestBudgetDeadHolderExpires: a holder that stops renewing without releasing
// (a killed process) keeps its slot for the lease duration, then loses it.
func TestBudgetDeadHolderExpires(t *testing.T) {
	k := needKube(t)
	ns, tok := k.namespace("expiry")
	dead := k.budget(ns, tok, "dead", 1, nil)
	s, err := dead.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Stop renewing as a killed process would: no release.
	close(s.stop)
	<-s.done
	lastRenew := renewOf(k.lease(ns, s.Name()))

	live := k.budget(ns, tok, "live", 1, nil)
	got, err := live.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer got.Release()
	freedAfter := time.Since(lastRenew)
	t.Logf("dead holder's slot taken %.2fs after its last renewal (lease duration 3s)", freedAfter.Seconds())
	if freedAfter < 3*time.Second {
		t.Errorf("slot taken %v after the last renewal, before the 3s lease expired", freedAfter)
	}
	l := k.lease(ns, s.Name())
	if l.Spec.Holder() != "live" || l.Spec.LeaseTransitions == nil || *l.Spec.LeaseTransitions != 1 {
		t.Errorf("after take-over: holder %q transitions %v, want live and 1", l.Spec.Holder(), l.Spec.LeaseTransitions)
	}
}

// TestBudgetRenewsAndNoticesLoss: a live holder keeps its slot beyond the
// lease duration; when the Lease is given to someone else behind its back, it
// says so and counts it.
func TestBudgetRenewsAndNoticesLoss(t *testing.T) {
	k := needKube(t)
	ns, tok := k.namespace("renew")
	b := k.budget(ns, tok, "holder", 1, nil)
	s, err := b.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	other := k.budget(ns, tok, "other", 1, func(c *Config) { c.Wait = 4500 * time.Millisecond })
	if _, err := other.Acquire(t.Context()); err != ErrBusy {
		t.Fatalf("another node while the holder renews: %v, want ErrBusy", err)
	}
	if s.Lost() {
		t.Fatal("slot lost although renewed")
	}
	l := k.lease(ns, s.Name())
	intruder := "intruder"
	l.Spec.HolderIdentity = &intruder
	k.call("PUT", "/apis/coordination.k8s.io/v1/namespaces/"+ns+"/leases/"+s.Name(), l, 200)
	deadline := time.Now().Add(5 * time.Second)
	for !s.Lost() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !s.Lost() {
		t.Fatal("holder did not notice its slot was taken")
	}
	if got := counterValue(t, b.metrics.errors.WithLabelValues(KindLost)); got != 1 {
		t.Errorf("errors_total{kind=lost} = %v, want 1", got)
	}
	s.Release() // must not clear the intruder's hold
	if h := k.lease(ns, s.Name()).Spec.Holder(); h != intruder {
		t.Errorf("release of a lost slot changed the holder to %q", h)
	}
}

// TestBudgetFailsClosed: every way of not being able to ask the API server
// is an UnavailableError of the right kind, and takes no slot.
func TestBudgetFailsClosed(t *testing.T) {
	k := needKube(t)
	ns, tok := k.namespace("closed")
	// An account without the Role.
	k.call("POST", "/api/v1/namespaces/"+ns+"/serviceaccounts", map[string]any{"metadata": map[string]any{"name": "nobody"}}, 201)
	nobody := k.token(ns, "nobody")
	bogus := filepath.Join(t.TempDir(), "bogus")
	os.WriteFile(bogus, []byte("not-a-token"), 0o600)
	otherNS, _ := k.namespace("elsewhere")
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		kind string
	}{
		{"wrong token", func(c *Config) { c.Client.TokenFile = bogus }, KindUnauthorized},
		{"no RBAC", func(c *Config) { c.Client.TokenFile = nobody }, KindForbidden},
		{"other namespace", func(c *Config) { c.Client.Namespace = otherNS }, KindForbidden},
		{"unreachable", func(c *Config) { c.Client.APIServer = "https://127.0.0.1:1" }, KindUnreachable},
		{"wrong CA", func(c *Config) { c.Client.CAFile = selfSignedCA(t) }, KindUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := k.budget(ns, tok, "n", 1, tc.mod)
			_, err := b.Acquire(t.Context())
			un, ok := err.(*UnavailableError)
			if !ok || un.Kind != tc.kind {
				t.Fatalf("Acquire: %v, want an UnavailableError of kind %s", err, tc.kind)
			}
			if got := counterValue(t, b.metrics.errors.WithLabelValues(tc.kind)); got != 1 {
				t.Errorf("errors_total{kind=%s} = %v, want 1", tc.kind, got)
			}
		})
	}
	data := k.call("GET", "/apis/coordination.k8s.io/v1/namespaces/"+ns+"/leases", nil, 200)
	if strings.Contains(string(data), DefaultLeasePrefix) {
		t.Errorf("a failed Acquire left a Lease: %s", data)
	}
}

// TestClientRereadsToken: the token is read per request, so a rotated
// projected token takes effect without a restart.
func TestClientRereadsToken(t *testing.T) {
	k := needKube(t)
	ns, tok := k.namespace("rotate")
	good, _ := os.ReadFile(tok)
	b := k.budget(ns, tok, "n", 1, nil)
	if _, err := b.client.Get(t.Context(), "absent"); !IsNotFound(err) {
		t.Fatalf("with the good token: %v, want 404", err)
	}
	os.WriteFile(tok, []byte("rotated-to-garbage"), 0o600)
	if _, err := b.client.Get(t.Context(), "absent"); errorKind(err) != KindUnauthorized {
		t.Fatalf("after rotating to a bad token: %v, want 401", err)
	}
	os.WriteFile(tok, good, 0o600)
	if _, err := b.client.Get(t.Context(), "absent"); !IsNotFound(err) {
		t.Fatalf("after rotating back: %v, want 404", err)
	}
}

// TestStatusShowsHolders: the landing page's view of the slots.
func TestStatusShowsHolders(t *testing.T) {
	k := needKube(t)
	ns, tok := k.namespace("status")
	b := k.budget(ns, tok, "node-a", 2, nil)
	s, err := b.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	st := b.Status()
	held := 0
	for _, x := range st {
		if x.Err != "" {
			t.Errorf("%s: %s", x.Name, x.Err)
		}
		if x.Holder == "node-a" {
			held++
		}
	}
	if len(st) != 2 || held != 1 {
		t.Errorf("status %+v, want 2 slots, one held by node-a", st)
	}
}
