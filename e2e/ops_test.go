package e2e

// Operations surface from outside (SPEC §9, §10; issue 5 item 2): the
// metrics listener, readiness, SIGHUP reload, graceful shutdown, secrets
// kept out of logs, metrics and answers, and the command line.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// specMetrics are SPEC §10's metrics with their label names.
var specMetrics = map[string][]string{
	"ldapgate_http_requests_total":               {"code", "route"},
	"ldapgate_http_request_duration_seconds":     {"route"},
	"ldapgate_upstream_request_duration_seconds": nil,
	"ldapgate_logins_total":                      {"directory", "result"},
	"ldapgate_ldap_operation_duration_seconds":   {"directory", "op"},
	// The sync metrics also say which replica synced (SPEC §12).
	"ldapgate_sync_runs_total":                     {"directory", "replica", "result"},
	"ldapgate_sync_duration_seconds":               {"directory", "replica"},
	"ldapgate_sync_phase_duration_seconds":         {"directory", "phase", "replica"}, // ours, beyond SPEC §10
	"ldapgate_sync_last_success_timestamp_seconds": {"directory", "replica"},
	"ldapgate_sync_changes_total":                  {"action", "directory", "replica"},
	"ldapgate_users":                               {"directory", "state"},
	"ldapgate_sessions_active":                     nil,
	"ldapgate_cache_requests_total":                {"cache", "result"},
}

// routes is the fixed route label set of the HTTP metrics (web/metrics.go).
var routes = []string{"login", "token", "logout", "whoami", "verify", "directories", "admin", "proxy", "public", "password"}

func scrape(t *testing.T, metricsURL string) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	code, body := get(t, metricsURL+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams, body
}

func labelNames(m *dto.Metric) []string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName())
	}
	sort.Strings(out)
	return out
}

func directoryID(t *testing.T, g *gate, name string) string {
	t.Helper()
	out := g.must(200, "GET", "/auth/v4/ldap", "admin", nil)
	for _, d := range out["list"].([]any) {
		if m := d.(map[string]any); m["name"] == name {
			return id(m["id"])
		}
	}
	t.Fatalf("directory %q not listed: %v", name, out)
	return ""
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// TestMetricsSurface: after a sync, a good and a bad login, proxied
// requests and admin calls, every SPEC §10 metric is on metrics_listen with
// its labels, the Go and process collectors too, and no label value is a
// username, a password or a raw path.
func TestMetricsSurface(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	up := startEchoUpstream(t, 0)
	g := startOpsGate(t, newOpsConfig(t, up.URL, "directories:\n"+dirYAML("corp", fx, "")))

	dirID := directoryID(t, g.gate, "corp")
	if out := g.must(200, "POST", "/auth/v4/ldap/"+dirID+"/sync", "admin", nil); out["result"] != "success" {
		t.Fatalf("sync: %v", out)
	}
	token := g.login(fx.Login("alice"), ldaptest.Password)
	wrong := "Wrong-" + randHex(t, 8)
	g.must(401, "POST", "/auth/v4/public/token", "", map[string]string{"username": fx.Login("bob"), "password": wrong})

	// Distinct random paths: authenticated (proxied), anonymous (401),
	// Basic (proxied), admin (404). None may become a label value.
	var paths []string
	for i := range 4 {
		p := "/r" + randHex(t, 6) + "/" + randHex(t, 4)
		paths = append(paths, p)
		if code, body := get(t, g.base+p, "Authorization", "Bearer "+token); code != 200 || !strings.Contains(string(body), p) {
			t.Fatalf("proxied %s: %d %s", p, code, body)
		}
		if code, _ := get(t, g.base+p+"?anon=1"); code != 401 {
			t.Fatalf("anonymous %s: %d", p, code)
		}
		if i == 0 {
			if code, _ := get(t, g.base+p, "Authorization", basic(fx.Login("bob"), ldaptest.Password)); code != 200 {
				t.Fatalf("Basic %s: %d", p, code)
			}
		}
		g.must(404, "GET", "/auth/v4/ldap/"+dirID+p, "admin", nil)
	}
	g.must(200, "GET", "/auth/v4/user", "admin", nil)
	g.must(200, "GET", "/auth/v4/whoami", token, nil)

	fams, raw := scrape(t, g.metrics)
	for name, want := range specMetrics {
		f := fams[name]
		if f == nil || len(f.GetMetric()) == 0 {
			t.Errorf("metric %s missing from /metrics", name)
			continue
		}
		for _, m := range f.GetMetric() {
			if got := labelNames(m); !slices.Equal(got, want) {
				t.Errorf("%s labels %v, want %v", name, got, want)
			}
		}
	}
	phases := map[string]bool{}
	for _, m := range fams["ldapgate_sync_phase_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "phase" {
				phases[l.GetValue()] = true
			}
		}
	}
	if len(phases) != 3 || !phases["read"] || !phases["plan"] || !phases["apply"] {
		t.Errorf("sync phases %v, want read, plan and apply", phases)
	}
	for _, prefix := range []string{"go_", "process_"} {
		found := false
		for name := range fams {
			found = found || strings.HasPrefix(name, prefix)
		}
		if !found {
			t.Errorf("no %s* metric: the collector is not registered", prefix)
		}
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if fams[name] == nil {
			t.Errorf("%s missing", name)
		}
	}

	// What happened must show in the values, or the metrics are wired to
	// nothing.
	value := func(name string, labels map[string]string) float64 {
		var sum float64
	next:
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
		return sum
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"ldapgate_sync_runs_total", map[string]string{"directory": "corp", "result": "success"}, 1},
		{"ldapgate_logins_total", map[string]string{"directory": "corp", "result": "success"}, 1},
		{"ldapgate_logins_total", map[string]string{"result": "success"}, 1},
		{"ldapgate_http_requests_total", map[string]string{"route": "proxy", "code": "200"}, 5},
		{"ldapgate_http_requests_total", map[string]string{"route": "proxy", "code": "401"}, 4},
		{"ldapgate_http_requests_total", map[string]string{"route": "admin", "code": "404"}, 4},
		{"ldapgate_upstream_request_duration_seconds", nil, 5},
		{"ldapgate_sync_changes_total", map[string]string{"directory": "corp", "action": "create"}, 5},
		{"ldapgate_users", map[string]string{"directory": "corp", "state": "active"}, 5},
		// ldapgate_sessions_active is recounted every 30 s (auth.gaugeEvery),
		// so a fresh session need not show yet: presence is checked above.
		{"ldapgate_sync_last_success_timestamp_seconds", map[string]string{"directory": "corp"}, 1.7e9},
	} {
		if fams[c.name] == nil {
			continue // reported above
		}
		if v := value(c.name, c.labels); v < c.min {
			t.Errorf("%s%v = %v, want >= %v", c.name, c.labels, v, c.min)
		}
	}
	// A failed login is counted as something other than success.
	if fams["ldapgate_logins_total"] != nil {
		all := value("ldapgate_logins_total", nil)
		if ok := value("ldapgate_logins_total", map[string]string{"result": "success"}); all-ok < 1 {
			t.Errorf("the failed login is not counted: all %v, success %v", all, ok)
		}
	}

	// Label values: bounded routes, numeric codes, no secrets or paths.
	forbidden := []string{ldaptest.Password, wrong, adminToken, token, fx.Dir.BindPassword.Reveal()}
	for _, u := range fx.Users {
		forbidden = append(forbidden, u)
	}
	for _, p := range paths {
		forbidden = append(forbidden, p, strings.Split(p, "/")[1][1:])
	}
	routeSet := map[string]bool{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				for _, bad := range forbidden {
					if bad != "" && strings.Contains(strings.ToLower(v), strings.ToLower(bad)) {
						t.Errorf("%s label %s=%q contains %q (a username, password, token or raw path)", name, l.GetName(), v, bad)
					}
				}
				if strings.Contains(v, "/") && !strings.HasPrefix(name, "go_") {
					t.Errorf("%s label %s=%q looks like a path", name, l.GetName(), v)
				}
				if l.GetName() == "route" {
					routeSet[v] = true
				}
			}
		}
	}
	for r := range routeSet {
		if !slices.Contains(routes, r) {
			t.Errorf("route label %q is outside the fixed set %v", r, routes)
		}
	}
	for _, bad := range forbidden {
		if bad != "" && bytes.Contains(raw, []byte(bad)) {
			t.Errorf("/metrics text contains %q", bad)
		}
	}
}

// readiness is the /readyz body.
type readiness struct {
	Ready       bool   `json:"ready"`
	Store       string `json:"store"`
	Directories []struct {
		ID          uint64 `json:"id"`
		Name        string `json:"name"`
		Ready       bool   `json:"ready"`
		Reason      string `json:"reason"`
		Error       string `json:"error"`
		LastSuccess string `json:"last_success"`
	} `json:"directories"`
}

func readyz(t *testing.T, metricsURL string) (int, readiness, string) {
	t.Helper()
	code, body := get(t, metricsURL+"/readyz")
	var r readiness
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz body is not JSON: %v: %s", err, body)
	}
	return code, r, string(body)
}

// TestReadyzReachableFreshAndDown: /readyz says per directory why it is
// ready — reachable now, or unreachable but freshly synced — and is 503
// when a directory is down and never synced.
func TestReadyzReachableFreshAndDown(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	up := startEchoUpstream(t, 0)
	dirs := "directories:\n" + dirYAML("corp", fx, "")

	// Probes are cached per process, so each state is seen by a process
	// that has not probed before: a probes while slapd runs, b syncs
	// while it runs and probes after it is gone, c starts after.
	a := startOpsGate(t, newOpsConfig(t, up.URL, dirs))
	b := startOpsGate(t, newOpsConfig(t, up.URL, dirs))

	if code, body := get(t, a.metrics+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, r, body := readyz(t, a.metrics)
	if code != 200 || !r.Ready || r.Store != "ok" || len(r.Directories) != 1 ||
		r.Directories[0].Name != "corp" || r.Directories[0].Reason != "reachable" || !r.Directories[0].Ready {
		t.Fatalf("/readyz with slapd up: %d %s", code, body)
	}

	if out := b.must(200, "POST", "/auth/v4/ldap/"+directoryID(t, b.gate, "corp")+"/sync", "admin", nil); out["result"] != "success" {
		t.Fatalf("sync: %v", out)
	}
	srv.Stop()

	code, r, body = readyz(t, b.metrics)
	if code != 200 || !r.Ready || len(r.Directories) != 1 {
		t.Fatalf("/readyz after slapd stopped, freshly synced: %d %s", code, body)
	}
	d := r.Directories[0]
	if d.Name != "corp" || d.Reason != "last_sync_fresh" || !d.Ready || d.Error == "" || d.LastSuccess == "" {
		t.Fatalf("/readyz directory after slapd stopped: %s", body)
	}
	if code, _ := get(t, b.metrics+"/healthz"); code != 200 {
		t.Fatalf("/healthz with the directory down: %d", code)
	}

	c := startOpsGate(t, newOpsConfig(t, up.URL, dirs))
	code, r, body = readyz(t, c.metrics)
	if code != http.StatusServiceUnavailable || r.Ready || len(r.Directories) != 1 {
		t.Fatalf("/readyz, never synced and down: %d %s", code, body)
	}
	if d := r.Directories[0]; d.Reason != "unreachable" || d.Ready || d.Error == "" || d.LastSuccess != "" {
		t.Fatalf("/readyz directory, never synced and down: %s", body)
	}
	if !strings.Contains(body, `"unreachable"`) {
		t.Fatalf("/readyz body does not say unreachable: %s", body)
	}
}

// TestOpsAdminTokenCompare: only the exact token opens the admin API; a
// wrong token of the same length and a prefix of the right one are 401.
func TestOpsAdminTokenCompare(t *testing.T) {
	up := startEchoUpstream(t, 0)
	g := startOpsGate(t, newOpsConfig(t, up.URL, ""))
	sameLen := []byte(adminToken)
	sameLen[len(sameLen)-1] ^= 1
	for _, c := range []struct {
		name, header string
		want         int
	}{
		{"right", "Bearer " + adminToken, 200},
		{"right, scheme in lower case", "bearer " + adminToken, 200},
		{"same length, last byte differs", "Bearer " + string(sameLen), 401},
		{"prefix", "Bearer " + adminToken[:len(adminToken)-1], 401},
		{"half prefix", "Bearer " + adminToken[:len(adminToken)/2], 401},
		{"longer", "Bearer " + adminToken + "x", 401},
		{"empty", "Bearer ", 401},
		{"token as Basic password", basic("admin", adminToken), 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			if code, body := get(t, g.base+"/auth/v4/ldap", "Authorization", c.header, "Accept", "application/json"); code != c.want {
				t.Fatalf("%d, want %d: %s", code, c.want, body)
			}
		})
	}
}

// silentLDAP accepts connections and never answers: a directory that hangs
// (a firewall dropping replies, a stuck server).
func silentLDAP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "ldap://" + ln.Addr().String()
}

// TestReadyzHungDirectory: a directory that hangs neither makes /readyz
// hang past a probe's patience nor makes a healthy directory look
// unreachable.
func TestReadyzHungDirectory(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	up := startEchoUpstream(t, 0)
	hung := strings.Replace(dirYAML("hung", fx, ""), fx.Dir.URLs[0], silentLDAP(t), 1)
	g := startOpsGate(t, newOpsConfig(t, up.URL, "directories:\n"+hung+dirYAML("corp", fx, "")))

	start := time.Now()
	code, r, body := readyz(t, g.metrics)
	took := time.Since(start)
	if code != http.StatusServiceUnavailable || len(r.Directories) != 2 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	for _, d := range r.Directories {
		switch d.Name {
		case "hung":
			if d.Ready || d.Reason != "unreachable" {
				t.Errorf("hung directory: %+v", d)
			}
		case "corp":
			if !d.Ready || d.Reason != "reachable" {
				t.Errorf("a healthy directory next to a hung one: %+v", d)
			}
		}
	}
	// Kubernetes' default probe timeout is 1 s, and a scraper's similar:
	// the answer must come well within the directory's own timeouts.
	if took > 3*time.Second {
		t.Errorf("/readyz took %v with a hung directory", took)
	}
	// The healthy directory stays reachable on the next probe too (a
	// failure caused by the hung one must not be cached for it).
	if _, r, body := readyz(t, g.metrics); len(r.Directories) != 2 || r.Directories[1].Reason != "reachable" && r.Directories[0].Reason != "reachable" {
		t.Errorf("second /readyz: %s", body)
	}
}
