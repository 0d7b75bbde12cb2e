package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const dashboardFile = "memfrag.json"

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Expr         string      `json:"expr"`
	RefID        string      `json:"refId"`
	Instant      bool        `json:"instant"`
	LegendFormat string      `json:"legendFormat"`
	Datasource   *datasource `json:"datasource"`
}

type gridPos struct{ X, Y, W, H int }

type panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *datasource `json:"datasource"`
	GridPos     gridPos     `json:"gridPos"`
	Targets     []target    `json:"targets"`
	Panels      []panel     `json:"panels"` // a collapsed row's panels
}

type variable struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Query      json.RawMessage `json:"query"` // a string, or {"query": "..."} in newer Grafana
	Datasource *datasource     `json:"datasource"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	Current    struct {
		Value json.RawMessage `json:"value"` // a string or a list of strings
	} `json:"current"`
}

type annotation struct {
	Name       string      `json:"name"`
	BuiltIn    int         `json:"builtIn"`
	Datasource *datasource `json:"datasource"`
	Expr       string      `json:"expr"`
}

type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []annotation `json:"list"`
	} `json:"annotations"`
	Panels []panel `json:"panels"`
}

// query is one PromQL expression of the dashboard and where it comes from.
type query struct {
	where   string // panel title and refId, or annotation name
	expr    string
	instant bool
}

func load(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// panels lists every panel that shows data: rows are left out, a collapsed
// row's panels are in.
func (d *dashboard) panels() []panel {
	var out []panel
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func (d *dashboard) queries() []query {
	var out []query
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			out = append(out, query{where: fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), expr: tg.Expr, instant: tg.Instant})
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, query{where: fmt.Sprintf("annotation %q", a.Name), expr: a.Expr})
		}
	}
	return out
}

func (v *variable) queryString() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	json.Unmarshal(v.Query, &q)
	return q.Query
}

func (v *variable) current() []string {
	var s string
	if json.Unmarshal(v.Current.Value, &s) == nil {
		return []string{s}
	}
	var l []string
	json.Unmarshal(v.Current.Value, &l)
	return l
}

// Grafana's variable references: $name, ${name} and ${name:format}.
var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// substitute replaces the variables Grafana knows in expr; references it
// does not know (label_replace's $1) stay as they are, as in Grafana.
func substitute(expr string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2]
		if v, ok := vars[name]; ok {
			return v
		}
		return ref
	})
}

// unresolved reports the Grafana variables left in expr after substitution.
func unresolved(expr string) []string {
	var out []string
	for _, m := range varRef.FindAllStringSubmatch(expr, -1) {
		name := m[1] + m[2]
		if name[0] < '0' || name[0] > '9' {
			out = append(out, name)
		}
	}
	return out
}

// regexOf formats a multi-value selection the way Grafana's Prometheus data
// source does: an alternation of the escaped values.
func regexOf(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = regexp.QuoteMeta(v)
	}
	return "(" + strings.Join(q, "|") + ")"
}

// builtins are Grafana's interval variables, sized for the full-stack run's
// one-second scrape interval (Grafana makes $__rate_interval at least four
// scrape intervals).
var builtins = map[string]string{
	"__interval":      "15s",
	"__rate_interval": "15s",
	"__interval_ms":   "15000",
}

func withBuiltins(vars map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range builtins {
		out[k] = v
	}
	for k, v := range vars {
		out[k] = v
	}
	return out
}

// sampleVars stand in for the variables where no Prometheus is at hand.
var sampleVars = withBuiltins(map[string]string{
	"datasource": "prometheus",
	"instance":   "node-a:19710",
	"numa_node":  "(0|1)",
	"zone":       "(DMA32|Normal)",
	"order":      "(4|9)",
})

func TestDashboardStructure(t *testing.T) {
	d := load(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for provisioning", d.UID, d.Title)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d: want a current Grafana schema (>= 39)", d.SchemaVersion)
	}

	vars := map[string]*variable{}
	for i := range d.Templating.List {
		v := &d.Templating.List[i]
		vars[v.Name] = v
		if v.Type == "query" {
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
				t.Errorf("variable %s: datasource %+v, want uid ${datasource}", v.Name, v.Datasource)
			}
			if !labelValues.MatchString(v.queryString()) {
				t.Errorf("variable %s: query %q is not label_values(...)", v.Name, v.queryString())
			}
		}
	}
	if ds := vars["datasource"]; ds == nil || ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
		t.Errorf("want a datasource variable of Prometheus data sources, got %+v", ds)
	}
	for _, name := range []string{"instance", "numa_node", "zone"} {
		if v := vars[name]; v == nil || v.Type != "query" {
			t.Errorf("want a query variable %q", name)
		}
	}

	ids := map[int]string{}
	var boxes []panel
	for _, p := range d.Panels {
		boxes = append(boxes, p)
		boxes = append(boxes, p.Panels...)
	}
	for _, p := range boxes {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel %q: id %d already used by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
	}
	for i, a := range boxes {
		for _, b := range boxes[i+1:] {
			if overlap(a.GridPos, b.GridPos) {
				t.Errorf("panels %q %+v and %q %+v overlap", a.Title, a.GridPos, b.Title, b.GridPos)
			}
		}
	}

	for _, p := range d.panels() {
		if p.Title == "" || p.Description == "" {
			t.Errorf("panel %d: title %q, description %q: both are needed", p.ID, p.Title, p.Description)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %+v: want an expr and a unique refId", p.Title, tg)
			}
			refs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s: datasource %+v, want uid ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 0 && (a.Datasource == nil || a.Datasource.UID != "${datasource}") {
			t.Errorf("annotation %q: datasource %+v, want uid ${datasource}", a.Name, a.Datasource)
		}
	}

	for _, q := range d.queries() {
		if left := unresolved(substitute(q.expr, sampleVars)); len(left) > 0 {
			t.Errorf("%s: variables %v are not defined", q.where, left)
		}
	}
}

// intervalRange finds a range selector or subquery sized by $__interval.
// Grafana's $__interval is the step, which can be below two scrape
// intervals: the range then holds at most one sample and increase() or
// changes() return nothing, so an event between scrapes vanishes (the
// remediation annotation did, with its 1m step and 1m scrapes).
// $__rate_interval is at least four scrape intervals and the step plus one.
var intervalRange = regexp.MustCompile(`\[\$(?:\{__interval\}|__interval\b)[^\]]*\]`)

func TestNoIntervalRanges(t *testing.T) {
	for _, c := range []struct {
		expr string
		bad  bool
	}{
		{`increase(x[$__interval])`, true},
		{`increase(x[${__interval}])`, true},
		{`max_over_time(x[$__interval:1m])`, true},
		{`increase(x[$__rate_interval])`, false},
		{`increase(x[5m])`, false},
		{`x * $__interval_ms`, false},
	} {
		if got := intervalRange.MatchString(c.expr); got != c.bad {
			t.Errorf("intervalRange.MatchString(%q) = %v, want %v", c.expr, got, c.bad)
		}
	}
	for _, q := range load(t).queries() {
		if m := intervalRange.FindString(q.expr); m != "" {
			t.Errorf("%s: range %s can hold a single sample; use [$__rate_interval]", q.where, m)
		}
	}
}

func overlap(a, b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

func TestOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b gridPos
		want bool
	}{
		{gridPos{0, 0, 12, 8}, gridPos{12, 0, 12, 8}, false}, // side by side
		{gridPos{0, 0, 12, 8}, gridPos{0, 8, 12, 8}, false},  // stacked
		{gridPos{0, 0, 12, 8}, gridPos{11, 7, 4, 4}, true},   // corner
		{gridPos{0, 0, 24, 1}, gridPos{5, 0, 2, 2}, true},    // inside
	} {
		if got := overlap(c.a, c.b); got != c.want {
			t.Errorf("overlap(%+v, %+v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"instance": "a:1", "zone": "(DMA32|Normal)", "__rate_interval": "15s"}
	for _, c := range []struct{ in, want string }{
		{`x{instance="$instance"}`, `x{instance="a:1"}`},
		{`x{instance="${instance}"}`, `x{instance="a:1"}`},
		{`x{zone=~"${zone:regex}"}`, `x{zone=~"(DMA32|Normal)"}`},
		{`rate(x[$__rate_interval])`, `rate(x[15s])`},
		{`label_replace(x, "o", "0$1", "o", "(.)")`, `label_replace(x, "o", "0$1", "o", "(.)")`},
		{`x{a="$unknown"}`, `x{a="$unknown"}`},
	} {
		if got := substitute(c.in, vars); got != c.want {
			t.Errorf("substitute(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := unresolved(`x{a="$unknown"} + label_replace(y, "o", "$1", "o", "(.)")`); !slices.Equal(got, []string{"unknown"}) {
		t.Errorf("unresolved = %v, want [unknown]", got)
	}
	if got := regexOf([]string{"0", "a.b"}); got != `(0|a\.b)` {
		t.Errorf("regexOf = %s", got)
	}
}

// TestQueriesParse has promtool parse every query, variables substituted,
// as a recording rule: a syntax error fails here, before any Grafana sees it.
func TestQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus); e2e/40 and .ci/run install it")
	}
	qs := load(t).queries()
	var rules bytes.Buffer
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	enc := json.NewEncoder(&rules)
	enc.SetEscapeHTML(false)
	for i, q := range qs {
		// A JSON string is a YAML double-quoted scalar.
		fmt.Fprintf(&rules, "      - record: dashboard_query_%d\n        expr: ", i)
		if err := enc.Encode(substitute(q.expr, sampleVars)); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(file, rules.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		msg := string(out)
		for i, q := range qs {
			msg = strings.ReplaceAll(msg, fmt.Sprintf("dashboard_query_%d", i), q.where)
		}
		t.Fatalf("promtool check rules: %v\n%s", err, msg)
	}
	t.Logf("%d queries parse", len(qs))
}

var labelValues = regexp.MustCompile(`^label_values\((?:(.*),\s*)?(\w+)\)$`)

// TestDashboardQueriesLive resolves the dashboard's variables and runs every
// panel and annotation query against the Prometheus MEMFRAG_PROMETHEUS_URL
// names, which must scrape memfrag_exporter (with remediation having run, for
// the remediation panels). Every query must return data.
// MEMFRAG_DASHBOARD_INSTANCE picks the instance; the default is the first.
func TestDashboardQueriesLive(t *testing.T) {
	base := os.Getenv("MEMFRAG_PROMETHEUS_URL")
	if base == "" {
		t.Skip("MEMFRAG_PROMETHEUS_URL not set: e2e/50-fullstack.sh runs this against a real Prometheus")
	}
	d := load(t)
	api := &promAPI{base: strings.TrimRight(base, "/"), client: &http.Client{Timeout: 10 * time.Second}}
	end := time.Now()
	start := end.Add(-5 * time.Minute)

	vars := withBuiltins(nil)
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			vars[v.Name] = "prometheus"
			continue
		case "query":
		default:
			t.Fatalf("variable %s: type %s is not handled by this test", v.Name, v.Type)
		}
		m := labelValues.FindStringSubmatch(v.queryString())
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(...)", v.Name, v.queryString())
		}
		options, err := api.labelValues(m[2], substitute(m[1], vars), start, end)
		if err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		if len(options) == 0 {
			t.Fatalf("variable %s: %s returned no values", v.Name, substitute(v.queryString(), vars))
		}
		chosen := choose(&v, options)
		if v.Name == "instance" {
			if want := os.Getenv("MEMFRAG_DASHBOARD_INSTANCE"); want != "" {
				if !slices.Contains(options, want) {
					t.Fatalf("MEMFRAG_DASHBOARD_INSTANCE=%s is not among the instances %v", want, options)
				}
				chosen = []string{want}
			}
		}
		if v.Multi || v.IncludeAll {
			vars[v.Name] = regexOf(chosen)
		} else {
			vars[v.Name] = chosen[0]
		}
		t.Logf("variable %s = %s (of %v)", v.Name, vars[v.Name], options)
	}

	for _, q := range d.queries() {
		expr := substitute(q.expr, vars)
		if left := unresolved(expr); len(left) > 0 {
			t.Errorf("%s: variables %v are not defined", q.where, left)
			continue
		}
		n, err := api.query(expr, q.instant, start, end)
		switch {
		case err != nil:
			t.Errorf("%s: %v\n\t%s", q.where, err, expr)
		case n == 0:
			t.Errorf("%s: no data\n\t%s", q.where, expr)
		default:
			t.Logf("%s: %d series", q.where, n)
		}
	}
}

// choose picks a variable's values as Grafana would on load: the saved
// selection where it is among the options, All for a multi-value variable
// saved as All, else the first option.
func choose(v *variable, options []string) []string {
	cur := v.current()
	if len(cur) == 0 || (len(cur) == 1 && cur[0] == "") {
		if v.IncludeAll {
			return options
		}
		return options[:1]
	}
	if slices.Contains(cur, "$__all") {
		return options
	}
	var out []string
	for _, c := range cur {
		if slices.Contains(options, c) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return options[:1]
	}
	return out
}

type promAPI struct {
	base   string
	client *http.Client
}

func (a *promAPI) get(path string, params url.Values, into any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path+"?"+params.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("querying Prometheus: %w", err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("%s: HTTP %d, undecodable answer: %w", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, r.Error)
	}
	return json.Unmarshal(r.Data, into)
}

func (a *promAPI) labelValues(label, match string, start, end time.Time) ([]string, error) {
	p := url.Values{"start": {ts(start)}, "end": {ts(end)}}
	if match != "" {
		p.Set("match[]", match)
	}
	var out []string
	err := a.get("/api/v1/label/"+url.PathEscape(label)+"/values", p, &out)
	return out, err
}

// query runs expr as Grafana would (an instant query, or a range query over
// [start, end]) and returns how many series have data.
func (a *promAPI) query(expr string, instant bool, start, end time.Time) (int, error) {
	var res struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Value  []any   `json:"value"`
			Values [][]any `json:"values"`
		} `json:"result"`
	}
	var err error
	if instant {
		err = a.get("/api/v1/query", url.Values{"query": {expr}, "time": {ts(end)}}, &res)
	} else {
		err = a.get("/api/v1/query_range", url.Values{"query": {expr}, "start": {ts(start)}, "end": {ts(end)}, "step": {"5"}}, &res)
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range res.Result {
		if len(r.Value) > 0 || len(r.Values) > 0 {
			n++
		}
	}
	return n, nil
}

func ts(t time.Time) string { return fmt.Sprintf("%.3f", float64(t.UnixMilli())/1000) }
