package e2e

import (
	"context"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// attackerPages are what a page on another origin of the same site (another
// port of ldapgate's host: cookies are not port-scoped, so the browser
// sends ldapgate's SameSite=Lax cookie along) does to a logged-in admin.
// ?base= names ldapgate, ?name= the user the page tries to create.
var attackerPages = template.Must(template.New("").Parse(`
{{define "admin-form"}}<!doctype html><title>attack</title>
<form id="f" method="post" action="{{.Base}}/auth/v4/user" enctype="text/plain">
<input type="hidden" name='{"username":"{{.Name}}","role":"admin","email":"evil@example.com","password":"Evil-Pass1' value='"}'>
</form><script>document.getElementById("f").submit()</script>{{end}}
{{define "login-form"}}<!doctype html><title>attack</title>
<form id="f" method="post" action="{{.Base}}/login">
<input type="hidden" name="username" value="{{.User}}"><input type="hidden" name="password" value="{{.Password}}">
<input type="hidden" name="rd" value="/">
</form><script>document.getElementById("f").submit()</script>{{end}}
{{define "logout-form"}}<!doctype html><title>attack</title>
<form id="f" method="post" action="{{.Base}}/logout"></form>
<script>document.getElementById("f").submit()</script>{{end}}
{{define "fetch"}}<!doctype html><title>attack</title><script>
const base = {{.Base}};
const user = JSON.stringify({username: {{.Name}}, role: "admin", email: "evil@example.com", password: "Evil-Pass1"});
Promise.allSettled([
  fetch(base + "/auth/v4/user", {method: "POST", mode: "no-cors", credentials: "include", headers: {"Content-Type": "text/plain"}, body: user}),
  fetch(base + "/auth/v4/user", {method: "POST", credentials: "include", headers: {"Content-Type": "application/json"}, body: user}),
  fetch(base + "/logout", {method: "POST", mode: "no-cors", credentials: "include"}),
  new Promise(done => { const i = new Image(); i.onload = i.onerror = done; i.src = base + "/logout"; }),
]).then(() => { const p = document.createElement("p"); p.id = "done"; p.textContent = "done"; document.body.appendChild(p); });
</script>{{end}}`))

func startAttacker(t *testing.T, fx *ldaptest.Fixture) (port string) {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		if attackerPages.Lookup(name) == nil {
			http.NotFound(w, r) // favicon.ico
			return
		}
		q := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		err := attackerPages.ExecuteTemplate(w, name, map[string]string{
			"Base": q.Get("base"), "Name": q.Get("name"), "User": fx.Login("bob"), "Password": ldaptest.Password,
		})
		if err != nil {
			t.Errorf("attacker page %s: %v", r.URL.Path, err)
		}
	}))
	t.Cleanup(ts.Close)
	_, port, _ = net.SplitHostPort(strings.TrimPrefix(ts.URL, "http://"))
	return port
}

// TestCrossSiteWritesInBrowser is finding 4 in Chromium against the real
// binary: with an admin's session in the browser, pages of another origin
// of the same site (so the Lax cookie IS sent) post forms (the text/plain
// JSON trick, a login as someone else, a logout) and fetches; every one is
// refused and nothing changes, while ldapgate's own login form and a
// same-origin JSON fetch work. Twice: at 127.0.0.1 (the browser sends
// Sec-Fetch-Site) and at a plain-HTTP name (only Origin).
func TestCrossSiteWritesInBrowser(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	if srv == nil {
		return
	}
	fx := srv.NewFixture(t)
	bin := opsBinary(t)
	c := newOpsConfig(t, upstream(t), "directories:\n"+dirYAML("crosssite", fx, ""))
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(c.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, bin, cfgPath, c.Listen)
	g := &gate{t: t, base: p.base}
	g.must(200, "POST", "/auth/v4/ldap/1/sync", "admin", nil)
	_, port, _ := net.SplitHostPort(c.Listen)
	attackerPort := startAttacker(t, fx)
	ctx := browser(t, chromedp.Flag("host-resolver-rules", "MAP ldapgate.test 127.0.0.1"))
	alice := strings.ToLower(fx.Login("alice"))

	for _, host := range []string{"127.0.0.1", "ldapgate.test"} {
		base := "http://" + host + ":" + port
		attacker := "http://" + host + ":" + attackerPort
		evil := "evil-" + strings.ReplaceAll(host, ".", "-")
		page := func(name string) string {
			return attacker + "/" + name + "?base=" + base + "&name=" + evil + "-" + name
		}
		// shows waits (with a generous bound, so that a test of the old
		// code reports every step) for the element sel and returns its
		// text, or what the browser shows instead.
		shows := func(sel chromedp.CSS) (string, bool) {
			t.Helper()
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			if s, err := chromedp.Run(wctx, chromedp.Text(sel)); err == nil {
				return s, true
			}
			s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.location.href + ": " + document.body.innerText`))
			return s, false
		}
		sessionIsAlice := func(after string) {
			t.Helper()
			do(t, ctx, chromedp.Navigate(base+"/whoami-check"))
			if u, ok := shows("#user"); !ok || u != alice {
				t.Errorf("%s, after %s: the browser's session is not alice's: %s", host, after, u)
			}
		}
		refusedPage := func(what string) {
			t.Helper()
			if body, ok := shows("pre"); !ok || !strings.Contains(body, "cross_site_request") {
				t.Errorf("%s, %s: not refused; the browser shows %s", host, what, body)
			}
		}

		// ldapgate's own login form logs in.
		do(t, ctx, chromedp.Navigate(base+"/login?rd=/home"), login(fx.Login("alice"), ldaptest.Password))
		if u := text(t, ctx, "user"); u != alice {
			t.Fatalf("%s: own login form: upstream saw %q", host, u)
		}
		// A same-origin fetch with JSON reaches the admin API.
		status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/auth/v4/user", {method: "POST",
			headers: {"Content-Type": "application/json"},
			body: JSON.stringify({username: "same-`+evil+`", role: "user", password: "Same-Origin-Pass1"})}).then(r => r.status)`,
			chromedp.EvalAwaitPromise))
		if err != nil || status != 200 {
			t.Fatalf("%s: same-origin fetch: %d %v", host, status, err)
		}

		do(t, ctx, chromedp.Navigate(page("admin-form")))
		refusedPage("text/plain form to the admin API")
		do(t, ctx, chromedp.Navigate(page("login-form")))
		refusedPage("login form as bob")
		sessionIsAlice("the login form")
		do(t, ctx, chromedp.Navigate(page("logout-form")))
		refusedPage("logout form")
		sessionIsAlice("the logout form")
		do(t, ctx, chromedp.Navigate(page("fetch")))
		if _, ok := shows("#done"); !ok {
			t.Errorf("%s: the fetch page did not finish", host)
		}
		sessionIsAlice("the fetches")
	}

	// A client that is not a browser sends the cookie and a foreign
	// Origin (another browser, a sibling host of the site): refused too.
	tok := g.login(fx.Login("alice"), ldaptest.Password)
	req, _ := http.NewRequest("POST", p.base+"/auth/v4/user",
		strings.NewReader(`{"username":"evil-raw","role":"admin","password":"Evil-Pass1"}`))
	req.Header.Set("Cookie", "ldapgate_session="+tok)
	req.Header.Set("Origin", "http://127.0.0.1:"+attackerPort)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(raw), "cross_site_request") {
		t.Fatalf("raw client, cookie and foreign Origin: %d %s", resp.StatusCode, raw)
	}

	// Nothing changed: only the same-origin fetches created users.
	list := users(g.must(200, "GET", "/auth/v4/user", "admin", nil))
	for name := range list {
		if strings.HasPrefix(name, "evil") {
			t.Errorf("a cross-site request created user %q", name)
		}
	}
	for _, want := range []string{"same-evil-127-0-0-1", "same-evil-ldapgate-test"} {
		if _, ok := list[want]; !ok {
			t.Errorf("the same-origin fetch did not create %q", want)
		}
	}
	// And the refusals were ldapgate's: the requests, cookie included,
	// arrived and were answered 403.
	_, metrics := get(t, "http://"+c.Metrics+"/metrics")
	for _, line := range []string{
		`ldapgate_http_requests_total{code="403",route="admin"}`,
		`ldapgate_http_requests_total{code="403",route="login"}`,
		`ldapgate_http_requests_total{code="403",route="logout"}`,
		`ldapgate_http_requests_total{code="405",route="logout"}`,
	} {
		if !strings.Contains(string(metrics), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}
