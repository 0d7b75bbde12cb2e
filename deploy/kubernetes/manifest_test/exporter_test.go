package manifests

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// testNodeName is what the downward API's spec.nodeName yields in the test.
const testNodeName = "test-node"

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// exporterBinary is $MEMFRAG_EXPORTER (e2e/25-manifests.sh passes the one
// `make build` wrote), else a fresh build of the repository's exporter.
func exporterBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MEMFRAG_EXPORTER"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "memfrag-manifest-test")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "memfrag_exporter")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building the exporter: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// containerEnv resolves the container's env as the kubelet would on a node
// named testNodeName.
func containerEnv(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName":
			env[e.Name] = testNodeName
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = "monitoring"
		case e.ValueFrom.ResourceFieldRef != nil:
			rf := e.ValueFrom.ResourceFieldRef
			var q = c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(rf.Resource, "limits."))]
			if strings.HasPrefix(rf.Resource, "requests.") {
				q = c.Resources.Requests[corev1.ResourceName(strings.TrimPrefix(rf.Resource, "requests."))]
			}
			if q.IsZero() || !rf.Divisor.IsZero() && rf.Divisor.Value() != 1 {
				t.Fatalf("env %s: resourceFieldRef %s unsupported by this test", e.Name, rf.Resource)
			}
			env[e.Name] = fmt.Sprint(q.Value())
		default:
			t.Fatalf("env %s: valueFrom %+v unsupported by this test", e.Name, e.ValueFrom)
		}
	}
	return env
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(VAR) with defined variables, as Kubernetes does in args.
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// mountMap maps each container mount path to where its content is on this
// machine: the hostPath itself, or a temp dir holding a Secret's items.
func mountMap(t *testing.T, r *rendered, token string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, vm := range r.ctr.VolumeMounts {
		v := r.volume(vm.Name)
		switch {
		case v.HostPath != nil && v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectoryOrCreate:
			// The state directory: this machine's own is not the test's.
			m[vm.MountPath] = t.TempDir()
		case v.HostPath != nil:
			m[vm.MountPath] = v.HostPath.Path
		case v.Secret != nil:
			dir := t.TempDir()
			for _, it := range v.Secret.Items {
				if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(token+"\n"), 0o400); err != nil {
					t.Fatal(err)
				}
			}
			m[vm.MountPath] = dir
		case v.Projected != nil:
			// The service account's token and CA, as the kubelet projects
			// them; nothing here is a real credential (the exporter only
			// reads them at start, and the test sends no alert that takes a
			// fleet slot).
			dir := t.TempDir()
			for _, src := range v.Projected.Sources {
				switch {
				case src.ServiceAccountToken != nil:
					writeFile(t, filepath.Join(dir, src.ServiceAccountToken.Path), "projected-token\n")
				case src.ConfigMap != nil && src.ConfigMap.Name == "kube-root-ca.crt":
					for _, it := range src.ConfigMap.Items {
						writeFile(t, filepath.Join(dir, it.Path), testCA(t))
					}
				default:
					t.Fatalf("volume %s: projected source %+v unsupported by this test", v.Name, src)
				}
			}
			m[vm.MountPath] = dir
		default:
			t.Fatalf("volume %s: kind unsupported by this test", v.Name)
		}
	}
	return m
}

// rewritePath maps a path inside the container to this machine through the
// longest mount that contains it; paths outside every mount stay as they are.
func rewritePath(p string, mounts map[string]string) string {
	keys := make([]string, 0, len(mounts))
	for k := range mounts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, mp := range keys {
		if p == mp || strings.HasPrefix(p, mp+"/") {
			return mounts[mp] + strings.TrimPrefix(p, mp)
		}
	}
	return p
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestExporterRunsWithManifestArgs starts the real exporter with each
// variant's args exactly as the kubelet would pass them ($(VAR) expanded from
// the container's env), with container paths mapped through the volume
// mounts to this machine (so --path.procfs=/host/proc reads the host's
// /proc) and the listen address moved to a free loopback port. A flag the
// binary does not know, a path flag pointing outside the mounts, a probe or
// metrics path it does not serve, a token file it cannot read: each fails
// here.
func TestExporterRunsWithManifestArgs(t *testing.T) {
	bin := exporterBinary(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r := render(t, v.dir)
			env := containerEnv(t, r.ctr)
			token := "manifest-test-token"
			mounts := mountMap(t, r, token)
			addr := freeLoopbackAddr(t)
			var args []string
			for _, a := range r.ctr.Args {
				a = expand(a, env)
				name, value, hasValue := strings.Cut(a, "=")
				switch {
				case name == "--web.listen-address":
					a = name + "=" + addr
				case hasValue && strings.HasPrefix(value, "/"):
					a = name + "=" + rewritePath(value, mounts)
				}
				args = append(args, a)
			}
			if v.remediation {
				// A test never writes to this machine's kernel knobs.
				args = append(args, "--remediate.dry-run")
			}
			// What the kubelet sets in every container: the API server the
			// fleet budget uses (not contacted at start).
			procEnv := []string{"PATH=/usr/bin:/bin", "KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=1"}
			for k, val := range env {
				procEnv = append(procEnv, k+"="+val)
			}
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = procEnv
			cmd.Stdout = &stderr
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// exited is closed once the process is gone; waitErr is then set.
			exited := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(exited) }()
			defer func() {
				select {
				case <-exited:
					return // already reported by waitReady
				default:
				}
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
					if waitErr != nil {
						t.Errorf("exporter exited with %v on SIGTERM\n%s", waitErr, stderr.String())
					}
				case <-time.After(20 * time.Second):
					_ = cmd.Process.Kill()
					t.Errorf("exporter did not stop within 20s of SIGTERM")
				}
			}()
			base := "http://" + addr
			waitReady(t, base+r.ctr.ReadinessProbe.HTTPGet.Path, exited, &waitErr, &stderr, args)

			if code, _ := get(t, base+r.ctr.LivenessProbe.HTTPGet.Path); code != http.StatusOK {
				t.Errorf("liveness probe %s answered %d", r.ctr.LivenessProbe.HTTPGet.Path, code)
			}
			code, body := get(t, base+r.sm.Spec.Endpoints[0].Path)
			if code != http.StatusOK || !strings.Contains(body, "\nmemfrag_free_blocks{") {
				t.Fatalf("ServiceMonitor path %s answered %d without memfrag_free_blocks", r.sm.Spec.Endpoints[0].Path, code)
			}
			if m := regexp.MustCompile(`(?m)^memfrag_scrape_collector_success\{collector="(\w+)"\} 0$`).FindAllStringSubmatch(body, -1); m != nil {
				t.Errorf("collectors failing with the manifest's paths: %v\n%s", m, stderr.String())
			}
			if v.remediation {
				checkRemediationEndpoint(t, base, token)
			} else if code, _ := post(t, base+"/remediate", "", alertFor("elsewhere")); code/100 == 2 {
				t.Errorf("metrics-only exporter accepted POST /remediate with %d", code)
			}
		})
	}
}

func waitReady(t *testing.T, url string, exited <-chan struct{}, waitErr *error, out *bytes.Buffer, args []string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	for range 100 {
		select {
		case <-exited:
			t.Fatalf("exporter exited (%v) with the manifest's args %q:\n%s", *waitErr, args, out.String())
		default:
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("readiness probe %s never answered 200:\n%s", url, out.String())
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// alertFor is an Alertmanager v4 webhook asking node to compact.
func alertFor(node string) string {
	labels := map[string]string{
		"alertname": "MemFragHighOrderMemoryLow", "remediate": "compact", "node": node,
		"instance": node + ".invalid:19710", "zone": "Normal", "numa_node": "0",
	}
	b, err := json.Marshal(map[string]any{
		"version": "4", "groupKey": fmt.Sprintf("{}:{node=%q}", node), "truncatedAlerts": 0,
		"status": "firing", "receiver": "memfrag-remediation",
		"groupLabels": map[string]string{"node": node}, "commonLabels": labels,
		"commonAnnotations": map[string]string{}, "externalURL": "http://alertmanager.invalid",
		"alerts": []map[string]any{{
			"status": "firing", "labels": labels, "annotations": map[string]string{},
			"startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
			"generatorURL": "", "fingerprint": "f" + node,
		}},
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// checkRemediationEndpoint: the webhook is mounted, wants the token from the
// Secret, and knows its node by the downward-API name: an alert for another
// node is skipped as other_host, one for testNodeName is not.
func checkRemediationEndpoint(t *testing.T, base, token string) {
	t.Helper()
	if code, reply := post(t, base+"/remediate", "", alertFor("elsewhere")); code != http.StatusUnauthorized {
		t.Errorf("POST /remediate without the token answered %d, want 401: %s", code, reply)
	}
	if code, reply := post(t, base+"/remediate", token, alertFor("elsewhere")); code/100 != 2 || !strings.Contains(reply, "other_host") {
		t.Errorf("POST /remediate for another node answered %d %s, want 2xx skipping it as other_host", code, reply)
	}
	if code, reply := post(t, base+"/remediate", token, alertFor(testNodeName)); code/100 != 2 || strings.Contains(reply, "other_host") {
		t.Errorf("POST /remediate for %s answered %d %s, want 2xx not skipped as other_host", testNodeName, code, reply)
	}
	_, body := get(t, base+"/metrics")
	var otherHost float64
	for _, m := range regexp.MustCompile(`(?m)^memfrag_remediation_skipped_total\{[^}]*reason="other_host"[^}]*\} (\S+)$`).FindAllStringSubmatch(body, -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatalf("parsing %q: %v", m[0], err)
		}
		otherHost += v
	}
	if otherHost != 1 {
		t.Errorf("%v alerts skipped as other_host, want 1: the one for another node (--remediate.node-name=$(NODE_NAME) must be %s)", otherHost, testNodeName)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o400); err != nil {
		t.Fatal(err)
	}
}

// testCA is a self-signed certificate in PEM, standing in for the cluster's
// CA bundle.
func testCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "manifest-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
