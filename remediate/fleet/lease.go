package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Lease is the part of a coordination.k8s.io/v1 Lease the budget reads and
// writes. Fields it does not know are not sent back on update; the API server
// keeps managedFields when an update omits them.
type Lease struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Metadata   Meta      `json:"metadata"`
	Spec       LeaseSpec `json:"spec"`
}

// Meta is the object metadata the budget uses.
type Meta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	UID             string            `json:"uid,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
}

// LeaseSpec is coordination.k8s.io/v1 LeaseSpec without the fields for
// coordinated leader election, which slots do not use.
type LeaseSpec struct {
	HolderIdentity       *string    `json:"holderIdentity,omitempty"`
	LeaseDurationSeconds *int32     `json:"leaseDurationSeconds,omitempty"`
	AcquireTime          *MicroTime `json:"acquireTime,omitempty"`
	RenewTime            *MicroTime `json:"renewTime,omitempty"`
	LeaseTransitions     *int32     `json:"leaseTransitions,omitempty"`
}

// Holder is the holder identity, "" when none.
func (s *LeaseSpec) Holder() string {
	if s.HolderIdentity == nil {
		return ""
	}
	return *s.HolderIdentity
}

// MicroTime is metav1.MicroTime's wire form: RFC 3339 with microseconds.
type MicroTime struct{ time.Time }

const microTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// MarshalJSON implements json.Marshaler.
func (t MicroTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.UTC().Format(microTimeLayout))
}

// UnmarshalJSON implements json.Unmarshaler; it accepts any RFC 3339 time.
func (t *MicroTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("micro time: %w", err)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("micro time %q: %w", s, err)
	}
	t.Time = v
	return nil
}

var (
	errToken  = errors.New("reading the service account token")
	errDecode = errors.New("decoding the API server's answer")
)

// APIError is a response of the API server other than success.
type APIError struct {
	Code    int    // HTTP status
	Reason  string // Status.reason, e.g. Conflict, AlreadyExists, NotFound
	Message string
}

func (e *APIError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("API server answered %d %s: %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("API server answered %d %s", e.Code, e.Reason)
}

// IsConflict reports whether err is a 409: the object changed since it was
// read (update), or exists already (create). Either way someone else won.
func IsConflict(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == http.StatusConflict
}

// IsNotFound reports whether err is a 404.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == http.StatusNotFound
}

// In-cluster defaults: where a pod finds the API server and its credentials.
const (
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	DefaultTokenFile  = serviceAccountDir + "/token"
	DefaultCAFile     = serviceAccountDir + "/ca.crt"
	namespaceFile     = serviceAccountDir + "/namespace"
)

// DefaultRequestTimeout bounds each request to the API server.
const DefaultRequestTimeout = 5 * time.Second

// maxResponseBytes bounds what is read of one response: a Lease is a few
// hundred bytes, an error Status a few KiB.
const maxResponseBytes = 1 << 20

// Client reads and writes the Leases of one namespace.
type Client struct {
	base      string // https://host:port, no trailing slash
	namespace string
	tokenFile string
	http      *http.Client
	timeout   time.Duration
}

// ClientConfig says where the API server is and how to authenticate; empty
// fields take the in-cluster values.
type ClientConfig struct {
	APIServer string // URL; "" means https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
	TokenFile string // bearer token, re-read on every request; "" means the service account's
	CAFile    string // CA bundle of the serving certificate; "" means the service account's
	Namespace string // "" means the service account's namespace
	Timeout   time.Duration
}

// NewClient checks the configuration and reads the CA bundle. It reads the
// token once to fail at start on a missing file; afterwards the token is read
// on every request, since projected tokens rotate.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.APIServer == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("no API server: set --remediate.fleet.api-server, or run in a pod (KUBERNETES_SERVICE_HOST/PORT)")
		}
		cfg.APIServer = "https://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(cfg.APIServer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("API server %q is not an http(s) URL", cfg.APIServer)
	}
	if cfg.TokenFile == "" {
		cfg.TokenFile = DefaultTokenFile
	}
	if cfg.CAFile == "" && u.Scheme == "https" {
		cfg.CAFile = DefaultCAFile
	}
	if cfg.Namespace == "" {
		b, err := os.ReadFile(namespaceFile)
		if err != nil {
			return nil, fmt.Errorf("no namespace given and none from the service account: %w", err)
		}
		cfg.Namespace = strings.TrimSpace(string(b))
	}
	if !validName(cfg.Namespace) {
		return nil, fmt.Errorf("namespace %q is not a DNS label", cfg.Namespace)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRequestTimeout
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment, // HTTPS_PROXY/NO_PROXY, as client-go honours them
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConns:          2,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	if u.Scheme == "https" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the API server's CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c := &Client{
		base: strings.TrimRight(cfg.APIServer, "/"), namespace: cfg.Namespace, tokenFile: cfg.TokenFile,
		http: &http.Client{Transport: tr, Timeout: cfg.Timeout}, timeout: cfg.Timeout,
	}
	if _, err := c.token(); err != nil {
		return nil, err
	}
	return c, nil
}

// Namespace is the namespace the client's Leases live in.
func (c *Client) Namespace() string { return c.namespace }

func (c *Client) token() (string, error) {
	b, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errToken, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%w: %s is empty", errToken, c.tokenFile)
	}
	return t, nil
}

func (c *Client) leaseURL(name string) string {
	u := c.base + "/apis/coordination.k8s.io/v1/namespaces/" + c.namespace + "/leases"
	if name != "" {
		u += "/" + name
	}
	return u
}

// Get reads one Lease.
func (c *Client) Get(ctx context.Context, name string) (*Lease, error) {
	return c.do(ctx, http.MethodGet, c.leaseURL(name), nil)
}

// Create makes a Lease; a 409 (IsConflict) means it exists already.
func (c *Client) Create(ctx context.Context, l *Lease) (*Lease, error) {
	return c.do(ctx, http.MethodPost, c.leaseURL(""), l)
}

// Update replaces a Lease at its resourceVersion; a 409 (IsConflict) means it
// changed since it was read.
func (c *Client) Update(ctx context.Context, l *Lease) (*Lease, error) {
	if l.Metadata.ResourceVersion == "" {
		return nil, errors.New("update without resourceVersion would overwrite whatever is there")
	}
	return c.do(ctx, http.MethodPut, c.leaseURL(l.Metadata.Name), l)
}

func (c *Client) do(ctx context.Context, method, u string, body *Lease) (*Lease, error) {
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		body.APIVersion, body.Kind = "coordination.k8s.io/v1", "Lease"
		body.Metadata.Namespace = c.namespace
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding lease: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("building %s request: %w", method, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "memfrag_exporter-fleet")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s lease: %w", method, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("%s lease: reading response: %w", method, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &APIError{Code: resp.StatusCode}
		var st struct {
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &st) == nil {
			e.Reason, e.Message = st.Reason, st.Message
		}
		if e.Reason == "" {
			e.Reason = http.StatusText(resp.StatusCode)
		}
		return nil, fmt.Errorf("%s lease: %w", method, e)
	}
	l, err := decodeLease(data)
	if err != nil {
		return nil, fmt.Errorf("%s lease: %w", method, err)
	}
	return l, nil
}

// decodeLease parses a Lease the API server sent and checks what the budget
// relies on.
func decodeLease(data []byte) (*Lease, error) {
	var l Lease
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%w: %w", errDecode, err)
	}
	if l.Kind != "Lease" || l.Metadata.Name == "" || l.Metadata.ResourceVersion == "" {
		return nil, fmt.Errorf("%w: not a Lease with a name and resourceVersion (kind %q)", errDecode, l.Kind)
	}
	if d := l.Spec.LeaseDurationSeconds; d != nil && *d < 0 {
		return nil, fmt.Errorf("%w: lease %s has a negative duration", errDecode, l.Metadata.Name)
	}
	return &l, nil
}

// validName accepts a DNS-1123 label (namespaces, and slot names built from
// a prefix).
func validName(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
