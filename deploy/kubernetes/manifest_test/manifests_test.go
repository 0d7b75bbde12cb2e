package manifests

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	kubeDir   = ".."       // deploy/kubernetes
	repoRoot  = "../../.." // the exporter's module
	namespace = "monitoring"
)

// variants are the kustomizations users apply.
var variants = []struct {
	name        string
	dir         string
	remediation bool
}{
	{"base", "../base", false},
	{"remediation", "../remediation", true},
}

// TestManifestFilesDecodeStrictly decodes every YAML file under
// deploy/kubernetes, patches included, into the API types with unknown and
// duplicate fields as errors, and checks that each one is used by a
// kustomization (a file nobody references is a file nobody tests).
func TestManifestFilesDecodeStrictly(t *testing.T) {
	referenced := map[string]bool{}
	var files []string
	err := filepath.WalkDir(kubeDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "manifest_test" {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 8 {
		t.Fatalf("found only %d manifest files under %s: %v", len(files), kubeDir, files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := DecodeStrict(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no document", f)
		}
		for _, o := range objs {
			k, ok := o.Obj.(*kusttypes.Kustomization)
			if !ok {
				continue
			}
			dir := filepath.Dir(f)
			for _, r := range k.Resources {
				referenced[filepath.Join(dir, r)] = true
			}
			for _, p := range k.Patches {
				if p.Path != "" {
					referenced[filepath.Join(dir, p.Path)] = true
				}
			}
		}
	}
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" && !referenced[filepath.Clean(f)] {
			t.Errorf("%s is referenced by no kustomization.yaml", f)
		}
	}
}

// TestPrometheusRuleUpToDate fails while base/prometheusrule.yaml differs
// from what alerts/ generates.
func TestPrometheusRuleUpToDate(t *testing.T) {
	want, err := PrometheusRule(filepath.Join(repoRoot, "alerts"), "alerts")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(kubeDir, "base", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("deploy/kubernetes/base/prometheusrule.yaml is stale: run `go run ./cmd/gen-prometheusrule` in deploy/kubernetes/manifest_test")
	}
	files, err := RuleFiles(filepath.Join(repoRoot, "alerts"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Log("alerts/ holds no rule files yet: the PrometheusRule has no groups")
	}
}

// rendered is one variant as kustomize builds it, decoded strictly.
type rendered struct {
	all     []Object
	ds      *appsv1.DaemonSet
	svc     *corev1.Service
	sa      *corev1.ServiceAccount
	sm      *monitoringv1.ServiceMonitor
	rule    *monitoringv1.PrometheusRule
	ctr     *corev1.Container
	flags   map[string][]string
	objects map[string]int // kind -> count
}

func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{objects: map[string]int{}}
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		objs, err := DecodeStrict(y)
		if err != nil {
			t.Fatalf("rendered %s/%s: %v", res.GetKind(), res.GetName(), err)
		}
		for _, o := range objs {
			r.all = append(r.all, o)
			r.objects[o.Kind]++
			switch v := o.Obj.(type) {
			case *appsv1.DaemonSet:
				r.ds = v
			case *corev1.Service:
				r.svc = v
			case *corev1.ServiceAccount:
				r.sa = v
			case *monitoringv1.ServiceMonitor:
				r.sm = v
			case *monitoringv1.PrometheusRule:
				r.rule = v
			}
		}
	}
	want := map[string]int{"DaemonSet": 1, "Service": 1, "ServiceAccount": 1, "ServiceMonitor": 1, "PrometheusRule": 1}
	if filepath.Base(dir) == "remediation" {
		// The fleet budget's Lease permissions (rbac.yaml).
		want["Role"], want["RoleBinding"] = 1, 1
	}
	for kind, n := range want {
		if r.objects[kind] != n {
			t.Fatalf("%s renders %d %s, want %d (all: %v)", dir, r.objects[kind], kind, n, r.objects)
		}
	}
	if len(r.objects) != len(want) {
		t.Errorf("%s renders unexpected kinds: %v", dir, r.objects)
	}
	cs := r.ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || len(r.ds.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatalf("DaemonSet has %d containers and %d init containers, want exactly one container", len(cs), len(r.ds.Spec.Template.Spec.InitContainers))
	}
	r.ctr = &cs[0]
	r.flags, err = parseFlags(r.ctr.Args)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ctr.Command) != 0 {
		t.Errorf("container overrides the image's ENTRYPOINT with %v", r.ctr.Command)
	}
	return r
}

// parseFlags maps flag names (without dashes) to their values; a boolean
// flag without value maps to "true". Anything that is not a long flag is an
// error: the exporter takes no positional arguments besides its command.
func parseFlags(args []string) (map[string][]string, error) {
	flags := map[string][]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			return nil, errorf("argument %q is not a --flag[=value]", a)
		}
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok {
			value = "true"
		}
		flags[name] = append(flags[name], value)
	}
	return flags, nil
}

// flag returns the single value of a flag, or def when absent.
func (r *rendered) flag(t *testing.T, name, def string) string {
	t.Helper()
	v := r.flags[name]
	switch len(v) {
	case 0:
		return def
	case 1:
		return v[0]
	}
	t.Errorf("flag --%s given %d times: %v", name, len(v), v)
	return v[len(v)-1]
}

func (r *rendered) mount(path string) *corev1.VolumeMount {
	for i := range r.ctr.VolumeMounts {
		if r.ctr.VolumeMounts[i].MountPath == path {
			return &r.ctr.VolumeMounts[i]
		}
	}
	return nil
}

func (r *rendered) volume(name string) *corev1.Volume {
	for i := range r.ds.Spec.Template.Spec.Volumes {
		if r.ds.Spec.Template.Spec.Volumes[i].Name == name {
			return &r.ds.Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

func TestRenderedManifestsAreWired(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			r := render(t, v.dir)
			checkObjects(t, r)
			checkSelectors(t, r)
			checkPortsAndProbes(t, r)
			checkMounts(t, r, v.remediation)
			checkNodeName(t, r)
			checkScheduling(t, r)
			checkFleetAccess(t, r, v.remediation)
			if v.remediation {
				checkRemediationSecurity(t, r)
			} else {
				checkMetricsOnlySecurity(t, r)
			}
		})
	}
}

func checkObjects(t *testing.T, r *rendered) {
	for _, o := range r.all {
		meta := objectMeta(o.Obj)
		if meta == nil {
			t.Errorf("%s has no metadata", o.Kind)
			continue
		}
		if meta.Namespace != namespace {
			t.Errorf("%s/%s in namespace %q, want %q", o.Kind, meta.Name, meta.Namespace, namespace)
		}
		if meta.Labels["app.kubernetes.io/name"] != "memfrag-exporter" {
			t.Errorf("%s/%s lacks label app.kubernetes.io/name=memfrag-exporter", o.Kind, meta.Name)
		}
	}
	if r.rule.Spec.Groups == nil {
		t.Errorf("PrometheusRule has no groups field")
	}
}

func checkSelectors(t *testing.T, r *rendered) {
	podLabels := r.ds.Spec.Template.Labels
	if r.ds.Spec.Selector == nil || !subset(r.ds.Spec.Selector.MatchLabels, podLabels) || len(r.ds.Spec.Selector.MatchExpressions) != 0 {
		t.Errorf("DaemonSet selector %v does not select its pod labels %v", r.ds.Spec.Selector, podLabels)
	}
	if len(r.svc.Spec.Selector) == 0 || !subset(r.svc.Spec.Selector, podLabels) {
		t.Errorf("Service selector %v does not select the pod labels %v", r.svc.Spec.Selector, podLabels)
	}
	if r.svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service clusterIP %q, want None (headless)", r.svc.Spec.ClusterIP)
	}
	sel := r.sm.Spec.Selector
	if len(sel.MatchLabels) == 0 || len(sel.MatchExpressions) != 0 || !subset(sel.MatchLabels, r.svc.Labels) {
		t.Errorf("ServiceMonitor selector %v does not select the Service labels %v", sel, r.svc.Labels)
	}
	ns := r.sm.Spec.NamespaceSelector
	if !ns.Any && len(ns.MatchNames) > 0 && !slices.Contains(ns.MatchNames, r.svc.Namespace) {
		t.Errorf("ServiceMonitor namespaceSelector %v misses the Service's namespace %s", ns, r.svc.Namespace)
	}
	if got := r.ds.Spec.Template.Spec.ServiceAccountName; got != r.sa.Name {
		t.Errorf("pod uses service account %q, manifests create %q", got, r.sa.Name)
	}
	if r.sm.Spec.JobLabel != "" && r.svc.Labels[r.sm.Spec.JobLabel] == "" {
		t.Errorf("ServiceMonitor jobLabel %q is not a Service label", r.sm.Spec.JobLabel)
	}
	// The shipped alert on scrape failures selects the job by name.
	if job := r.svc.Labels[r.sm.Spec.JobLabel]; !strings.Contains(job, "memfrag") {
		t.Errorf("scrape job would be %q, which alerts' up{job=~\".*memfrag.*\"} does not match", job)
	}
}

// listenPort is the port of --web.listen-address (the exporter's default
// when absent).
func (r *rendered) listenPort(t *testing.T) int32 {
	t.Helper()
	addr := r.flag(t, "web.listen-address", ":19710")
	_, p, ok := strings.Cut(addr[strings.LastIndex(addr, "]")+1:], ":")
	if !ok {
		t.Fatalf("--web.listen-address=%s has no port", addr)
	}
	port, err := atoi32(p)
	if err != nil {
		t.Fatalf("--web.listen-address=%s: %v", addr, err)
	}
	return port
}

func checkPortsAndProbes(t *testing.T, r *rendered) {
	port := r.listenPort(t)
	var portName string
	for _, p := range r.ctr.Ports {
		if p.ContainerPort == port {
			portName = p.Name
		} else {
			t.Errorf("container port %d (%s) is not the listen port %d", p.ContainerPort, p.Name, port)
		}
	}
	if portName == "" {
		t.Fatalf("no named container port %d for --web.listen-address", port)
	}
	if len(r.svc.Spec.Ports) != 1 {
		t.Fatalf("Service has %d ports, want 1", len(r.svc.Spec.Ports))
	}
	sp := r.svc.Spec.Ports[0]
	if sp.TargetPort.String() != portName && sp.TargetPort.IntValue() != int(port) {
		t.Errorf("Service targetPort %s is neither %s nor %d", sp.TargetPort.String(), portName, port)
	}
	if len(r.sm.Spec.Endpoints) != 1 {
		t.Fatalf("ServiceMonitor has %d endpoints, want 1", len(r.sm.Spec.Endpoints))
	}
	ep := r.sm.Spec.Endpoints[0]
	if ep.Port != sp.Name {
		t.Errorf("ServiceMonitor endpoint port %q is not the Service port name %q", ep.Port, sp.Name)
	}
	if want := r.flag(t, "web.telemetry-path", "/metrics"); ep.Path != want {
		t.Errorf("ServiceMonitor path %q, exporter serves metrics at %q", ep.Path, want)
	}
	probes := map[string]*corev1.Probe{"liveness": r.ctr.LivenessProbe, "readiness": r.ctr.ReadinessProbe}
	wantPath := map[string]string{"liveness": "/-/healthy", "readiness": "/-/ready"}
	for kind, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing or not httpGet", kind)
			continue
		}
		if p.HTTPGet.Port.String() != portName && p.HTTPGet.Port.IntValue() != int(port) {
			t.Errorf("%s probe port %s is not the exporter's port %s/%d", kind, p.HTTPGet.Port.String(), portName, port)
		}
		if p.HTTPGet.Path != wantPath[kind] {
			t.Errorf("%s probe path %q, want %q", kind, p.HTTPGet.Path, wantPath[kind])
		}
		if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s probe scheme %s, exporter serves plain HTTP without --web.config.file", kind, p.HTTPGet.Scheme)
		}
	}
}

// checkMounts: --path.procfs/--path.sysfs name read-only hostPath mounts of
// the host's /proc and /sys, and every other hostPath mount is the same
// host path under those roots (so the exporter finds it where it looks).
func checkMounts(t *testing.T, r *rendered, remediation bool) {
	roots := map[string]string{ // flag value -> host path
		r.flag(t, "path.procfs", "/proc"): "/proc",
		r.flag(t, "path.sysfs", "/sys"):   "/sys",
	}
	for mp, host := range roots {
		m := r.mount(mp)
		if m == nil {
			t.Errorf("no volume mounted at %s for --path.* (%s)", mp, host)
			continue
		}
		v := r.volume(m.Name)
		if v == nil || v.HostPath == nil || v.HostPath.Path != host {
			t.Errorf("mount %s is not the host's %s: %+v", mp, host, v)
		}
		if !m.ReadOnly {
			t.Errorf("mount %s of the host's %s is writable", mp, host)
		}
	}
	// The remediation state file's directory is the node's own, at the same
	// path: a restarted pod finds the cooldowns where the last one left them.
	stateDir := ""
	if sf := r.flag(t, "remediate.state-file", ""); sf != "" {
		stateDir = filepath.Dir(sf)
	}
	var writable []string
	for _, m := range r.ctr.VolumeMounts {
		v := r.volume(m.Name)
		if v == nil {
			t.Errorf("mount %s names no volume %q", m.MountPath, m.Name)
			continue
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Errorf("mount %s uses a subPath: secret and hostPath updates would not propagate", m.MountPath)
		}
		if !m.ReadOnly {
			writable = append(writable, m.MountPath)
		}
		if v.HostPath == nil {
			continue
		}
		if stateDir != "" && m.MountPath == stateDir {
			if v.HostPath.Path != stateDir {
				t.Errorf("state directory %s is the host's %s, want the same path", m.MountPath, v.HostPath.Path)
			}
			continue
		}
		ok := false
		for root, host := range roots {
			if rel, err := filepath.Rel(root, m.MountPath); err == nil && !strings.HasPrefix(rel, "..") {
				ok = v.HostPath.Path == filepath.Join(host, rel)
			}
		}
		if !ok {
			t.Errorf("hostPath %s is mounted at %s, outside --path.procfs/--path.sysfs or at a different relative path", v.HostPath.Path, m.MountPath)
		}
	}
	slices.Sort(writable)
	var want []string
	if remediation {
		want = []string{"/host/proc/sys/vm", "/host/sys/devices/system/node", "/var/lib/memfrag-exporter"}
	}
	if !slices.Equal(writable, want) {
		t.Errorf("writable mounts %v, want exactly %v", writable, want)
	}
	for _, v := range r.ds.Spec.Template.Spec.Volumes {
		used := false
		for _, m := range r.ctr.VolumeMounts {
			used = used || m.Name == v.Name
		}
		if !used {
			t.Errorf("volume %s is mounted nowhere", v.Name)
		}
	}
}

func checkNodeName(t *testing.T, r *rendered) {
	if got := r.flag(t, "remediate.node-name", ""); got != "$(NODE_NAME)" {
		t.Errorf("--remediate.node-name=%q, want $(NODE_NAME)", got)
	}
	ok := false
	for _, e := range r.ctr.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			ok = true
		}
	}
	if !ok {
		t.Errorf("env NODE_NAME does not come from the downward API's spec.nodeName")
	}
	// The same node name must reach the alerts as `node`.
	relabeled := false
	for _, rc := range r.sm.Spec.Endpoints[0].RelabelConfigs {
		if slices.Equal(rc.SourceLabels, []monitoringv1.LabelName{"__meta_kubernetes_pod_node_name"}) && rc.TargetLabel == "node" &&
			(rc.Action == "" || strings.EqualFold(rc.Action, "replace")) {
			relabeled = true
		}
	}
	if !relabeled {
		t.Errorf("ServiceMonitor does not relabel __meta_kubernetes_pod_node_name into node")
	}
}

func checkScheduling(t *testing.T, r *rendered) {
	spec := r.ds.Spec.Template.Spec
	everywhere := false
	for _, tol := range spec.Tolerations {
		if tol.Key == "" && tol.Operator == corev1.TolerationOpExists && tol.Effect == "" {
			everywhere = true
		}
	}
	if !everywhere {
		t.Errorf("tolerations %v do not tolerate every taint", spec.Tolerations)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("pod automounts a service account token; only the remediation variant projects one, for the fleet budget")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("pod shares host namespaces (network %v, pid %v, ipc %v)", spec.HostNetwork, spec.HostPID, spec.HostIPC)
	}
	res := r.ctr.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := res.Requests[name]
		lim, okLim := res.Limits[name]
		if !okReq || !okLim {
			t.Errorf("%s request/limit missing: %v", name, res)
			continue
		}
		if req.Cmp(lim) > 0 {
			t.Errorf("%s request %s above limit %s", name, req.String(), lim.String())
		}
	}
}

func checkMetricsOnlySecurity(t *testing.T, r *rendered) {
	pod := r.ds.Spec.Template.Spec.SecurityContext
	sc := r.ctr.SecurityContext
	if sc == nil || pod == nil {
		t.Fatalf("security contexts missing: pod %v container %v", pod, sc)
	}
	if !isTrue(sc.RunAsNonRoot) || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("container may run as root: runAsNonRoot %v runAsUser %v", sc.RunAsNonRoot, sc.RunAsUser)
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Errorf("privileged must be false explicitly")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("allowPrivilegeEscalation must be false")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("root filesystem writable")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities %v, want drop [ALL] and none added", sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccomp profile %v, want RuntimeDefault", seccomp)
	}
	if len(r.flags["remediate.enable"]) != 0 {
		t.Errorf("metrics-only variant enables remediation")
	}
}

func checkRemediationSecurity(t *testing.T, r *rendered) {
	sc := r.ctr.SecurityContext
	if sc == nil || !isTrue(sc.Privileged) || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Fatalf("remediation container must be privileged root, as documented: %v", sc)
	}
	if isTrue(sc.RunAsNonRoot) {
		t.Errorf("runAsNonRoot true contradicts runAsUser 0: the kubelet would refuse to start it")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		t.Errorf("the API rejects privileged with allowPrivilegeEscalation false")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("root filesystem writable")
	}
	if got := r.flags["remediate.enable"]; !slices.Equal(got, []string{"true"}) {
		t.Errorf("--remediate.enable = %v", got)
	}
	if len(r.flags["remediate.allow-unauthenticated"]) != 0 {
		t.Errorf("remediation overlay allows unauthenticated webhooks")
	}
	if len(r.flags["remediate.dry-run"]) != 0 {
		t.Errorf("remediation overlay is a dry run")
	}
	if len(r.flags["remediate.actions"]) != 1 {
		t.Errorf("remediation overlay has no explicit --remediate.actions allowlist")
	}
	tokenFile := r.flag(t, "remediate.token-file", "")
	m := r.mount(filepath.Dir(tokenFile))
	if m == nil {
		t.Fatalf("--remediate.token-file=%q is not in a mounted directory", tokenFile)
	}
	v := r.volume(m.Name)
	if v == nil || v.Secret == nil || v.Secret.SecretName == "" || !m.ReadOnly {
		t.Fatalf("token directory %s is not a read-only Secret volume: %+v", m.MountPath, v)
	}
	found := false
	for _, it := range v.Secret.Items {
		found = found || it.Path == filepath.Base(tokenFile)
	}
	if !found {
		t.Errorf("Secret volume %s does not project %s", v.Name, filepath.Base(tokenFile))
	}
	if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o077 != 0 {
		t.Errorf("token file readable by group/other: mode %v", v.Secret.DefaultMode)
	}
	if v.Secret.Optional != nil && *v.Secret.Optional {
		t.Errorf("token Secret is optional: the pod would start without it")
	}
	// On SIGTERM the exporter waits for a running action up to
	// --remediate.timeout (+5 s); the kubelet must not kill it before.
	timeout, err := time.ParseDuration(r.flag(t, "remediate.timeout", "5m"))
	if err != nil {
		t.Fatalf("--remediate.timeout: %v", err)
	}
	grace := r.ds.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= timeout+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v does not cover --remediate.timeout=%v plus 5s: SIGKILL would cut a running action", grace, timeout)
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func subset(sub, super map[string]string) bool {
	for k, v := range sub {
		if w, ok := super[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func isTrue(b *bool) bool { return b != nil && *b }

func atoi32(s string) (int32, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	return int32(n), err
}

// objectMeta returns the ObjectMeta of a typed API object.
func objectMeta(obj any) *metav1.ObjectMeta {
	if o, ok := obj.(metav1.Object); ok {
		if m, ok := o.(interface{ GetObjectMeta() metav1.Object }); ok {
			if om, ok := m.GetObjectMeta().(*metav1.ObjectMeta); ok {
				return om
			}
		}
	}
	return nil
}

// checkFleetAccess: the base has no API credentials at all; the remediation
// variant projects a short-lived token, and its Role allows exactly the
// Lease verbs the fleet budget uses in its own namespace.
func checkFleetAccess(t *testing.T, r *rendered, remediation bool) {
	var projected []string
	for _, v := range r.ds.Spec.Template.Spec.Volumes {
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil {
					projected = append(projected, v.Name)
				}
			}
		}
	}
	var roles []*rbacv1.Role
	var bindings []*rbacv1.RoleBinding
	for _, o := range r.all {
		switch v := o.Obj.(type) {
		case *rbacv1.Role:
			roles = append(roles, v)
		case *rbacv1.RoleBinding:
			bindings = append(bindings, v)
		}
	}
	if !remediation {
		if len(projected) != 0 || len(roles) != 0 || len(bindings) != 0 {
			t.Errorf("metrics-only variant has API credentials: token volumes %v, %d roles, %d bindings", projected, len(roles), len(bindings))
		}
		return
	}
	if len(projected) != 1 {
		t.Fatalf("remediation variant projects %d service account tokens, want 1", len(projected))
	}
	if r.flag(t, "remediate.fleet.max-concurrent", "0") == "0" {
		t.Errorf("remediation variant leaves the fleet budget off")
	}
	tok := r.flag(t, "remediate.fleet.token-file", "")
	if m := r.mount(filepath.Dir(tok)); m == nil || m.Name != projected[0] || !m.ReadOnly {
		t.Errorf("--remediate.fleet.token-file=%s is not in the read-only projected token volume %s", tok, projected[0])
	}
	if len(roles) != 1 || len(bindings) != 1 {
		t.Fatalf("%d roles and %d bindings, want one each", len(roles), len(bindings))
	}
	role, rb := roles[0], bindings[0]
	if len(role.Rules) != 1 {
		t.Fatalf("role has %d rules, want 1: %+v", len(role.Rules), role.Rules)
	}
	rule := role.Rules[0]
	verbs := strings.Join(rule.Verbs, ",")
	if strings.Join(rule.APIGroups, ",") != "coordination.k8s.io" || strings.Join(rule.Resources, ",") != "leases" ||
		verbs != "get,list,watch,create,update,patch" {
		t.Errorf("role rule %+v, want leases in coordination.k8s.io: get, list, watch, create, update, patch (no delete)", rule)
	}
	sa := r.ds.Spec.Template.Spec.ServiceAccountName
	if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != role.Name || len(rb.Subjects) != 1 ||
		rb.Subjects[0].Kind != "ServiceAccount" || rb.Subjects[0].Name != sa || rb.Subjects[0].Namespace != r.ds.Namespace {
		t.Errorf("binding %+v does not bind role %s to the DaemonSet's account %s/%s", rb, role.Name, r.ds.Namespace, sa)
	}
	if role.Namespace != r.ds.Namespace || rb.Namespace != r.ds.Namespace {
		t.Errorf("role/binding in %s/%s, DaemonSet in %s", role.Namespace, rb.Namespace, r.ds.Namespace)
	}
}
