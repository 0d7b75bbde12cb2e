package fleet

import (
	"testing"
	"time"
)

// FuzzDecodeLease: whatever the API server (or something in its place) sends,
// decoding returns a Lease with a name and resourceVersion or an error, and
// never panics.
func FuzzDecodeLease(f *testing.F) {
	for _, s := range []string{
		`{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"memfrag-remediation-0","resourceVersion":"12"},"spec":{"holderIdentity":"n1","leaseDurationSeconds":30,"renewTime":"2026-12-01T22:00:00.123456Z"}}`,
		`{"kind":"Lease","metadata":{"name":"x","resourceVersion":"1"},"spec":{"renewTime":null}}`,
		`{"kind":"Status","code":404}`,
		`{"kind":"Lease","metadata":{"name":"x","resourceVersion":"1"},"spec":{"leaseDurationSeconds":-1}}`,
		`{"kind":"Lease","metadata":{"name":"x","resourceVersion":"1"},"spec":{"renewTime":"yesterday"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := decodeLease(data)
		if err != nil {
			return
		}
		if l.Metadata.Name == "" || l.Metadata.ResourceVersion == "" {
			t.Fatalf("accepted a lease without name or resourceVersion: %+v", l)
		}
		if d := l.Spec.LeaseDurationSeconds; d != nil && *d < 0 {
			t.Fatalf("accepted a negative duration")
		}
	})
}

func TestMicroTimeRoundTrip(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`"2026-12-01T22:00:00.123456Z"`, "2026-12-01T22:00:00.123456Z"},
		{`"2026-12-01T23:00:00+01:00"`, "2026-12-01T22:00:00Z"},
		{`"2026-12-01T22:00:00.1234567Z"`, "2026-12-01T22:00:00.1234567Z"},
	} {
		var m MicroTime
		if err := m.UnmarshalJSON([]byte(tc.in)); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got := m.UTC().Format(time.RFC3339Nano); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.in, got, tc.want)
		}
		b, _ := m.MarshalJSON()
		var back MicroTime
		if err := back.UnmarshalJSON(b); err != nil || back.Sub(m.Time).Abs() >= time.Microsecond {
			t.Errorf("%s: round trip %s: %v", tc.in, b, err)
		}
	}
	var m MicroTime
	if err := m.UnmarshalJSON([]byte(`"not a time"`)); err == nil {
		t.Error("accepted a bad time")
	}
}

func TestConfigRejects(t *testing.T) {
	base := Config{MaxConcurrent: 1, Identity: "n", Client: ClientConfig{APIServer: "https://127.0.0.1:6443", Namespace: "ns"}}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no slots", func(c *Config) { c.MaxConcurrent = 0 }},
		{"bad prefix", func(c *Config) { c.LeasePrefix = "Bad_Prefix" }},
		{"fractional duration", func(c *Config) { c.LeaseDuration = 2500 * time.Millisecond }},
		{"short duration", func(c *Config) { c.LeaseDuration = time.Second }},
		{"negative wait", func(c *Config) { c.Wait = -time.Second }},
		{"no identity", func(c *Config) { c.Identity = "" }},
		{"bad URL", func(c *Config) { c.Client.APIServer = "ftp://x" }},
		{"bad namespace", func(c *Config) { c.Client.Namespace = "Not/A/Label" }},
		{"missing CA", func(c *Config) { c.Client.CAFile = "/nonexistent/ca.crt" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mod(&c)
			if _, err := New(c, nil); err == nil {
				t.Error("accepted")
			}
		})
	}
}
