package web

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

func TestTokenLogin(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	s.setState(t, "frank", account.StateBlocked, account.ReasonAdmin)
	s.setState(t, "dave", account.StateBlockedInLDAP, account.ReasonNone)
	s.fx.AddUser(t, "gina", "staff")
	s.fx.AddUser(t, "hank", "others")
	pw := ldaptest.Password
	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"email key", loginBody(s.fx.Login("alice"), pw), 200, ""},
		{"username key", `{"username":"` + s.fx.Login("bob") + `","password":"` + pw + `"}`, 200, ""},
		{"directory as number", loginBody(s.fx.Users["bob"], pw, "directory", "1"), 200, ""},
		{"wrong password", loginBody(s.fx.Login("alice"), "x"), 401, "bad_credentials"},
		{"unknown user", loginBody(s.fx.Prefix+"zed@example.com", pw), 401, "bad_credentials"},
		{"empty password", loginBody(s.fx.Login("alice"), ""), 401, "bad_credentials"},
		{"no name", `{"password":"x"}`, 401, "bad_credentials"},
		{"disabled in LDAP", loginBody(s.fx.Login("carol"), pw), 401, "bad_credentials"},
		{"admin block", loginBody(s.fx.Login("frank"), pw), 403, "forbidden"},
		{"blocked_in_ldap", loginBody(s.fx.Login("dave"), pw), 403, "forbidden"},
		{"added after sync", loginBody(s.fx.Login("gina"), pw), 200, ""},
		{"added after sync, skipped by rules", loginBody(s.fx.Login("hank"), pw), 403, "forbidden"},
		{"unknown directory", loginBody(s.fx.Login("alice"), pw, "directory", "nope"), 400, "unknown_directory"},
		{"bad JSON", `{"email":`, 400, "bad_json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if tc.name == "directory as number" {
				body = strings.Replace(body, `"1"`, "1", 1)
			}
			r := s.do(t, "POST", "/auth/v4/public/token", body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status != 200 {
				if c := r.errCode(t); c != tc.code {
					t.Fatalf("code %q, want %q", c, tc.code)
				}
				if len(r.header.Values("Set-Cookie")) != 0 {
					t.Fatal("cookie set on failure")
				}
				return
			}
			var a struct {
				ID        string `json:"id"`
				Token     string `json:"token"`
				ExpiresAt string `json:"expires_at"`
				Confirmed bool   `json:"confirmed"`
			}
			r.json(t, &a)
			if _, err := strconv.ParseUint(a.ID, 10, 64); err != nil || len(a.Token) != 43 || !a.Confirmed {
				t.Fatalf("answer %s", r.body)
			}
			if _, err := time.Parse(time.RFC3339, a.ExpiresAt); err != nil {
				t.Fatalf("expires_at %q", a.ExpiresAt)
			}
			if w := s.do(t, "GET", "/auth/v4/whoami", "", "Authorization: Bearer "+a.Token); w.status != 200 {
				t.Fatalf("whoami with the new token: %d", w.status)
			}
		})
	}
}

func TestAmbiguousDirectoryAndDirectoryList(t *testing.T) {
	s := newStack(t, stackOpts{extraDir: true})
	if s == nil {
		return
	}
	r := s.do(t, "POST", "/auth/v4/public/token", loginBody(s.fx.Login("alice"), ldaptest.Password))
	if r.status != 400 || r.errCode(t) != "ambiguous_directory" {
		t.Fatalf("ambiguous: %d %s", r.status, r.body)
	}
	r = s.do(t, "POST", "/auth/v4/public/token", loginBody(s.fx.Login("alice"), ldaptest.Password, "directory", s.fx.Dir.Name))
	if r.status != 200 {
		t.Fatalf("with directory: %d %s", r.status, r.body)
	}
	var list struct {
		List []struct {
			ID     uint64 `json:"id"`
			Name   string `json:"name"`
			Domain string `json:"domain"`
			Type   string `json:"type"`
		} `json:"list"`
		Size int `json:"size"`
	}
	d := s.do(t, "GET", "/auth/v4/public/directories", "")
	d.json(t, &list)
	if d.status != 200 || list.Size != 2 || len(list.List) != 2 || list.List[0].Domain != "example.com" || list.List[0].Type != "ldap" || list.List[0].ID == 0 {
		t.Fatalf("directories: %s", d.body)
	}
	// The login page offers the choice.
	p := s.do(t, "GET", "/login", "")
	if !strings.Contains(string(p.body), `<select id="directory" name="directory">`) ||
		!strings.Contains(string(p.body), fmt.Sprintf(`<option value="%d">%s (example.com)</option>`, list.List[1].ID, list.List[1].Name)) {
		t.Fatalf("login page without the directory choice:\n%s", p.body)
	}
}

func TestRateLimitAnswer(t *testing.T) {
	s := newStack(t, stackOpts{tweak: func(c *config.Config) { c.Login.MaxFailures = 2 }})
	if s == nil {
		return
	}
	for range 2 {
		s.do(t, "POST", "/auth/v4/public/token", loginBody(s.fx.Login("alice"), "bad"))
	}
	r := s.do(t, "POST", "/auth/v4/public/token", loginBody(s.fx.Login("alice"), ldaptest.Password))
	ra, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != 429 || r.errCode(t) != "too_many_attempts" || err != nil || ra < 1 || ra > 300 {
		t.Fatalf("limited: %d %q Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
	}
	// The form answers the same status, with the page.
	f := s.do(t, "POST", "/login", url.Values{"username": {s.fx.Login("alice")}, "password": {ldaptest.Password}}.Encode())
	if f.status != 429 || f.header.Get("Retry-After") == "" || !strings.Contains(string(f.body), `id="error"`) {
		t.Fatalf("form limited: %d", f.status)
	}
}

func TestCookieFlags(t *testing.T) {
	for _, secure := range []bool{true, false} {
		t.Run(fmt.Sprint("secure=", secure), func(t *testing.T) {
			s := newStack(t, stackOpts{tweak: func(c *config.Config) { c.Session.SecureCookie = &secure }})
			if s == nil {
				return
			}
			r := s.do(t, "POST", "/auth/v4/public/token", loginBody(s.fx.Login("bob"), ldaptest.Password))
			sc := r.header.Get("Set-Cookie")
			c, err := http.ParseSetCookie(sc)
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != "ldapgate_session" || len(c.Value) != 43 || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure != secure {
				t.Fatalf("cookie %q", sc)
			}
			if time.Until(c.Expires) < 11*time.Hour {
				t.Fatalf("cookie expires %v", c.Expires)
			}
		})
	}
}

func TestLoginPageAndForm(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	p := s.do(t, "GET", "/login?rd=%2Fapp%3Fx%3D1", "")
	body := string(p.body)
	for _, want := range []string{`<form method="post" action="/login">`, `id="username" name="username"`,
		`id="password" name="password" type="password"`, `<input type="hidden" name="rd" value="/app?x=1">`, `id="submit"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(body, "<select") || strings.Contains(body, `id="error"`) || strings.Contains(body, "<script") {
		t.Error("one directory: no select, no error, no script")
	}
	if p.header.Get("X-Frame-Options") != "DENY" || !strings.Contains(p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Error("login page can be framed")
	}

	form := func(user, pw, rd string) reply {
		return s.do(t, "POST", "/login", url.Values{"username": {user}, "password": {pw}, "rd": {rd}}.Encode())
	}
	wrong := form(s.fx.Login("alice"), "bad", "/app")
	unknown := form(s.fx.Prefix+"nobody@example.com", "bad", "/app")
	for _, r := range []reply{wrong, unknown} {
		if r.status != 401 || !strings.Contains(string(r.body), `<p id="error" role="alert">Invalid username or password.</p>`) {
			t.Fatalf("failed form: %d\n%s", r.status, r.body)
		}
	}
	// The page must not say whether the user exists.
	re := regexp.MustCompile(`value="[^"]*"`)
	if re.ReplaceAllString(string(wrong.body), "") != re.ReplaceAllString(string(unknown.body), "") {
		t.Fatal("wrong password and unknown user pages differ")
	}
	ok := form(s.fx.Login("alice"), ldaptest.Password, "/app/page?q=1")
	if ok.status != 303 || ok.header.Get("Location") != "/app/page?q=1" || !strings.Contains(ok.header.Get("Set-Cookie"), "ldapgate_session=") {
		t.Fatalf("form login: %d %v", ok.status, ok.header)
	}
	blocked := form(s.fx.Login("erin"), ldaptest.Password, "/")
	if blocked.status != 403 || !strings.Contains(string(blocked.body), `id="error"`) {
		t.Fatalf("skipped user: %d", blocked.status)
	}
}

func TestOpenRedirectRefused(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	for _, rd := range []string{"//evil.example", "https://evil.example", "/\\evil.example", "\\\\evil.example",
		"http:/evil", "/\t/evil.example", "/%09/evil", " /evil", "javascript:alert(1)", "evil.example", "/\r\nX: y"} {
		r := s.do(t, "POST", "/login", url.Values{"username": {s.fx.Login("bob")}, "password": {ldaptest.Password}, "rd": {rd}}.Encode())
		loc := r.header.Get("Location")
		if r.status != 303 || (loc != "/" && loc != rd) || (loc == rd && rd != "/%09/evil") {
			t.Errorf("rd %q → %d Location %q", rd, r.status, loc)
		}
		p := s.do(t, "GET", "/login?rd="+url.QueryEscape(rd), "")
		if strings.Contains(string(p.body), "evil.example") {
			t.Errorf("rd %q kept in the page", rd)
		}
	}
}

func TestUnauthenticated(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	r := s.do(t, "GET", "/app/x?y=1&z=%2F", "", "Accept: text/html,application/xhtml+xml")
	if r.status != 302 || r.header.Get("Location") != "/login?rd="+url.QueryEscape("/app/x?y=1&z=%2F") {
		t.Fatalf("browser: %d %q", r.status, r.header.Get("Location"))
	}
	r = s.do(t, "GET", "/api/x", "", "Accept: application/json")
	if r.status != 401 || r.errCode(t) != "unauthorized" {
		t.Fatalf("API client: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/auth/v4/whoami", "/auth/v4/verify"} {
		if r := s.do(t, "GET", p, ""); r.status != 401 {
			t.Fatalf("%s: %d", p, r.status)
		}
	}
	// Public paths are proxied without a session; dot segments cannot
	// reach out of them.
	if r := s.do(t, "GET", "/static/app.css", ""); r.status != 200 {
		t.Fatalf("public: %d", r.status)
	}
	for _, p := range []string{"/static/../secret", "/static/%2e%2e/secret", "/secret/..%2f..%2fstatic/x", "/staticx"} {
		if r := s.do(t, "GET", p, ""); r.status != 401 {
			t.Errorf("%s: %d, want 401", p, r.status)
		}
	}
}

func TestSessionCarriers(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "bob")
	for _, h := range []string{"Authorization: Bearer " + tok, "x-xsrf-token: " + tok, s.cookie(tok)} {
		r := s.do(t, "GET", "/auth/v4/whoami", "", h)
		var u account.User
		r.json(t, &u)
		if r.status != 200 || u.Username != strings.ToLower(s.fx.Login("bob")) || u.Role != "user" {
			t.Fatalf("%s: %d %s", h, r.status, r.body)
		}
		if strings.Contains(string(r.body), "password") {
			t.Fatal("whoami shows a password field")
		}
	}
	// A stale cookie does not hide a valid header token.
	r := s.do(t, "GET", "/auth/v4/whoami", "", s.cookie(strings.Repeat("A", 43)), "x-xsrf-token: "+tok)
	if r.status != 200 {
		t.Fatalf("stale cookie + header: %d", r.status)
	}
}

func TestSessionEnds(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	t.Run("block", func(t *testing.T) {
		tok := s.login(t, "bob")
		if r := s.do(t, "GET", "/app", "", s.cookie(tok)); r.status != 200 {
			t.Fatalf("before: %d", r.status)
		}
		s.setState(t, "bob", account.StateBlocked, account.ReasonAdmin)
		if r := s.do(t, "GET", "/app", "", s.cookie(tok)); r.status != 401 {
			t.Fatalf("after block: %d", r.status)
		}
		if r := s.do(t, "GET", "/app", "", s.cookie(tok), "Accept: text/html"); r.status != 302 {
			t.Fatalf("after block, browser: %d", r.status)
		}
		s.setState(t, "bob", account.StateActive, account.ReasonNone)
	})
	t.Run("POST logout", func(t *testing.T) {
		tok := s.login(t, "alice")
		r := s.do(t, "POST", "/auth/v4/logout", "", "Authorization: Bearer "+tok)
		if r.status != 200 || !strings.Contains(r.header.Get("Set-Cookie"), "expires=") {
			t.Fatalf("logout: %d %v", r.status, r.header)
		}
		if r := s.do(t, "GET", "/auth/v4/whoami", "", "Authorization: Bearer "+tok); r.status != 401 {
			t.Fatalf("after logout: %d", r.status)
		}
	})
	t.Run("logout page", func(t *testing.T) {
		tok := s.login(t, "alice")
		// GET is refused: any page could send it (an <img>, a link).
		if r := s.do(t, "GET", "/logout", "", s.cookie(tok)); r.status != 405 || r.header.Get("Allow") != "POST" {
			t.Fatalf("GET /logout: %d %v", r.status, r.header)
		}
		if r := s.do(t, "GET", "/auth/v4/whoami", "", s.cookie(tok)); r.status != 200 {
			t.Fatalf("GET /logout ended the session: %d", r.status)
		}
		r := s.do(t, "POST", "/logout", "", s.cookie(tok))
		c, err := http.ParseSetCookie(r.header.Get("Set-Cookie"))
		if r.status != 303 || r.header.Get("Location") != "/login" || err != nil || c.Value != "" || c.Expires.After(time.Now()) {
			t.Fatalf("logout page: %d %v", r.status, r.header)
		}
		if r := s.do(t, "GET", "/auth/v4/whoami", "", s.cookie(tok)); r.status != 401 {
			t.Fatalf("after logout: %d", r.status)
		}
	})
	t.Run("DELETE token", func(t *testing.T) {
		tok, other := s.login(t, "alice"), s.login(t, "alice")
		if r := s.do(t, "DELETE", "/auth/v4/token/"+tok, ""); r.status != 200 || string(r.body) != "{}" {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if r := s.do(t, "GET", "/auth/v4/whoami", "", "Authorization: Bearer "+tok); r.status != 401 {
			t.Fatalf("deleted token: %d", r.status)
		}
		if r := s.do(t, "GET", "/auth/v4/whoami", "", "Authorization: Bearer "+other); r.status != 200 {
			t.Fatalf("other token: %d", r.status)
		}
		if r := s.do(t, "DELETE", "/auth/v4/token/short", ""); r.status != 404 {
			t.Fatalf("malformed token: %d", r.status)
		}
	})
}

func basic(user, pw string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func TestBasicAuth(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	bob := s.fx.Login("bob")
	r := s.do(t, "GET", "/app", "", basic(bob, ldaptest.Password))
	var e echo
	r.json(t, &e)
	if r.status != 200 || first(e.Headers, "X-Forwarded-User") != strings.ToLower(bob) {
		t.Fatalf("basic proxied: %d %s", r.status, r.body)
	}
	if r := s.do(t, "GET", "/auth/v4/whoami", "", basic(bob, "wrong")); r.status != 401 {
		t.Fatalf("wrong: %d", r.status)
	}
	if r := s.do(t, "GET", "/auth/v4/whoami", "", basic(bob, ldaptest.Password)); r.status != 200 {
		t.Fatalf("right after wrong (failure not cached): %d", r.status)
	}
	if r := s.do(t, "GET", "/auth/v4/whoami", "", basic(s.fx.Login("erin"), ldaptest.Password)); r.status != 403 {
		t.Fatalf("skipped user: %d", r.status)
	}
	s.setState(t, "bob", account.StateBlocked, account.ReasonAdmin)
	if r := s.do(t, "GET", "/auth/v4/whoami", "", basic(bob, ldaptest.Password)); r.status != 403 {
		t.Fatalf("cached success of a blocked user: %d", r.status)
	}
}

func first(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// spoofed are client copies of the identity headers an attacker might
// send: other cases and the '_' spellings (CVE-2025-64484).
var spoofed = []string{
	"X-Forwarded-User: mallory", "x-forwarded-user: mallory", "X-FORWARDED-EMAIL: m@evil", "X_Forwarded_User: mallory",
	"x_forwarded_role: admin", "X-Forwarded_Groups: admins", "X-Forwarded-Role: admin",
}

func TestHeaderSpoofing(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "bob")
	bob := strings.ToLower(s.fx.Login("bob"))
	check := func(t *testing.T, e echo, wantUser string) {
		t.Helper()
		for k, v := range e.Headers {
			n := strings.ToLower(strings.ReplaceAll(k, "_", "-"))
			if !strings.HasPrefix(n, "x-forwarded-") || n == "x-forwarded-for" || n == "x-forwarded-proto" || n == "x-forwarded-host" {
				continue
			}
			for _, x := range v {
				if strings.Contains(x, "mallory") || strings.Contains(x, "evil") || (n == "x-forwarded-role" && x == "admin") || x == "admins" {
					t.Errorf("spoofed %s: %q reached the upstream", k, x)
				}
			}
		}
		if got := first(e.Headers, "X-Forwarded-User"); got != wantUser {
			t.Errorf("X-Forwarded-User = %q, want %q", got, wantUser)
		}
	}
	t.Run("proxied", func(t *testing.T) {
		r := s.do(t, "GET", "/app", "", append([]string{s.cookie(tok) + "; theme=dark"}, spoofed...)...)
		var e echo
		r.json(t, &e)
		check(t, e, bob)
		if first(e.Headers, "X-Forwarded-Role") != "user" {
			t.Errorf("role %q", first(e.Headers, "X-Forwarded-Role"))
		}
		if strings.Contains(strings.Join(e.Cookies, ";"), "ldapgate_session") || !strings.Contains(strings.Join(e.Cookies, ";"), "theme=dark") {
			t.Errorf("cookies upstream: %v", e.Cookies)
		}
	})
	t.Run("public", func(t *testing.T) {
		r := s.do(t, "GET", "/static/x", "", spoofed...)
		var e echo
		r.json(t, &e)
		check(t, e, "")
	})
	t.Run("forward-auth", func(t *testing.T) {
		r := s.do(t, "GET", "/auth/v4/verify", "", append([]string{"Authorization: Bearer " + tok}, spoofed...)...)
		if r.status != 200 || r.header.Get("X-Forwarded-User") != bob || r.header.Get("X-Forwarded-Role") != "user" {
			t.Fatalf("verify: %d %v", r.status, r.header)
		}
		for k, v := range r.header {
			if strings.Contains(strings.Join(v, ","), "mallory") {
				t.Errorf("verify echoed %s", k)
			}
		}
		r = s.do(t, "GET", "/auth/v4/verify", "", spoofed...)
		if r.status != 401 || r.header.Get("X-Forwarded-User") != "" {
			t.Fatalf("verify without session: %d %v", r.status, r.header)
		}
	})
}

func TestWebSocketThroughFront(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	h := http.Header{}
	h.Set("Cookie", "ldapgate_session="+tok)
	h.Set("X-Forwarded-User", "mallory")
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.url, "http")+"/ws", h)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, msg := range []string{"hello", strings.Repeat("x", 100000)} {
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ToLower(s.fx.Login("alice")) + ":" + msg; string(got) != want {
			t.Fatalf("echo %q…", got[:min(len(got), 60)])
		}
	}
	// Without a session the upgrade is refused.
	_, resp, err = websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.url, "http")+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("unauthenticated upgrade: %v %v", err, resp)
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	s := newStack(t, stackOpts{upstream: dead})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	r := s.do(t, "GET", "/app", "", s.cookie(tok))
	if r.status != 502 || r.errCode(t) != "upstream_unavailable" {
		t.Fatalf("upstream down: %d %s", r.status, r.body)
	}
}

func TestAdminMount(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	for _, tc := range []struct {
		path, auth, want string
	}{
		{"/auth/v4/user", "Authorization: Bearer " + tok, strings.ToLower(s.fx.Login("alice"))},
		{"/auth/v4/ldap/1/sync", s.cookie(tok), strings.ToLower(s.fx.Login("alice"))},
		{"/auth/v4/internal/settings/log/level", "Authorization: Bearer some-admin-token", "-"},
		{"/auth/v4/user", "X-Nothing: 1", "-"},
	} {
		r := s.do(t, "GET", tc.path, "", tc.auth)
		if r.status != 200 {
			t.Fatalf("%s: %d", tc.path, r.status)
		}
		if got := <-s.adminCaller; got != tc.want {
			t.Fatalf("%s: admin saw caller %q, want %q", tc.path, got, tc.want)
		}
	}
	// /auth/v4/users is not the admin prefix: proxied (here: 401, no session).
	if r := s.do(t, "GET", "/auth/v4/users", ""); r.status != 401 {
		t.Fatalf("/auth/v4/users: %d", r.status)
	}
	if n := counter(t, s, "admin", "200"); n != 4 {
		t.Fatalf("admin route counted %v", n)
	}
}

func counter(t *testing.T, s *stack, route, code string) float64 {
	t.Helper()
	var m dto.Metric
	c, err := s.m.HTTPRequests.GetMetricWithLabelValues(route, code)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestRouteLabelsAreBounded(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	for i := range 20 {
		s.do(t, "GET", fmt.Sprintf("/app/%d", i), "", s.cookie(tok))
		s.do(t, "GET", fmt.Sprintf("/static/%d", i), "")
	}
	s.do(t, "GET", "/login", "")
	s.do(t, "GET", "/auth/v4/verify", "")
	mfs, err := s.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, n := range routeNames {
		allowed[n] = true
	}
	for _, mf := range mfs {
		if mf.GetName() != "ldapgate_http_requests_total" && mf.GetName() != "ldapgate_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && !allowed[l.GetValue()] {
					t.Errorf("route label %q", l.GetValue())
				}
			}
		}
	}
	if counter(t, s, "proxy", "200") != 20 || counter(t, s, "public", "200") != 20 || counter(t, s, "token", "200") != 1 {
		t.Fatal("route counts wrong")
	}
}

// Reload swaps settings under live traffic (run with -race).
func TestReloadUnderTraffic(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			cfg := *s.cfg
			cfg.PublicPaths = []string{"/static/", fmt.Sprintf("/pub%d/", i%2)}
			cfg.Session.CookieName = "ldapgate_session"
			s.web.Reload(&cfg)
			time.Sleep(time.Millisecond)
		}
	})
	for i := 0; ctx.Err() == nil && i < 200; i++ {
		if r := s.do(t, "GET", "/app", "", s.cookie(tok)); r.status != 200 {
			t.Fatalf("during reload: %d", r.status)
		}
	}
	cancel()
	wg.Wait()
	cfg := *s.cfg
	cfg.PublicPaths = []string{"/open/"}
	s.web.Reload(&cfg)
	if r := s.do(t, "GET", "/open/x", ""); r.status != 200 {
		t.Fatalf("new public path: %d", r.status)
	}
	if r := s.do(t, "GET", "/static/x", ""); r.status != 401 {
		t.Fatalf("old public path: %d", r.status)
	}
}

// The per-address limit uses the socket peer unless it is a trusted
// proxy: a client cannot dodge it by inventing X-Forwarded-For values.
func TestClientAddressForLimits(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			s := newStack(t, stackOpts{tweak: func(c *config.Config) {
				c.Login.MaxFailuresPerAddress = 3
				if trusted {
					c.TrustedProxies = []string{"127.0.0.1/32"}
				}
			}})
			if s == nil {
				return
			}
			var last reply
			for i := range 4 {
				last = s.do(t, "POST", "/auth/v4/public/token", loginBody(fmt.Sprintf("%su%d@example.com", s.fx.Prefix, i), "bad"),
					fmt.Sprintf("X-Forwarded-For: 198.51.100.%d", i))
			}
			if want := map[bool]int{false: 429, true: 401}[trusted]; last.status != want {
				t.Fatalf("4th failure from spoofed addresses: %d, want %d", last.status, want)
			}
		})
	}
}

func TestLoginBodyBounded(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	big := `{"email":"` + strings.Repeat("a", maxLoginBody) + `","password":"x"}`
	if r := s.do(t, "POST", "/auth/v4/public/token", big); r.status != 413 {
		t.Fatalf("large login body: %d", r.status)
	}
	if r := s.do(t, "GET", "/auth/v4/public/token", ""); r.status != 405 {
		t.Fatalf("GET token: %d", r.status)
	}
}

// TestCredentialsNotForwarded: the upstream trusts the identity headers and
// never sees a credential of ldapgate's — not the session token in any
// carrier, not a Basic password (the user's directory password) — while an
// Authorization scheme ldapgate does not use passes through untouched.
func TestCredentialsNotForwarded(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "bob")
	basicHdr := basic(s.fx.Login("bob"), ldaptest.Password)
	for _, hs := range [][]string{
		{"Authorization: Bearer " + tok},
		{"x-xsrf-token: " + tok},
		{s.cookie(tok), "x-xsrf-token: " + tok},
		{basicHdr},
	} {
		r := s.do(t, "GET", "/app/page", "", hs...)
		var e echo
		r.json(t, &e)
		if r.status != 200 || e.Headers["X-Forwarded-User"] == nil {
			t.Fatalf("%v: %d %s", hs, r.status, r.body)
		}
		for name, vals := range e.Headers {
			for _, v := range vals {
				if strings.Contains(v, tok) || strings.Contains(v, ldaptest.Password) || strings.EqualFold(name, "Authorization") ||
					strings.EqualFold(name, "X-Xsrf-Token") {
					t.Fatalf("%v: upstream got %s: %s", hs, name, v)
				}
			}
		}
	}
	// Someone else's scheme, on a request authenticated by the cookie.
	r := s.do(t, "GET", "/app/page", "", s.cookie(tok), "Authorization: Token platform-own-key")
	var e echo
	r.json(t, &e)
	if got := e.Headers["Authorization"]; len(got) != 1 || got[0] != "Token platform-own-key" {
		t.Fatalf("foreign Authorization changed: %v", got)
	}
}

// TestVerifyRedirectLogin: GET /auth/v4/verify?redirect=login sends a
// browser without a session to /login with rd rebuilt from the forwarded
// headers, kept only for ldapgate's own host and login.redirect_hosts;
// the form login then lands there, with the cookie on the shared domain.
// API clients and plain verify (nginx) keep the 401.
func TestVerifyRedirectLogin(t *testing.T) {
	s := newStack(t, stackOpts{tweak: func(c *config.Config) {
		c.Login.RedirectHosts = []string{"app.example.com"}
		c.Session.CookieDomain = "example.com"
	}})
	if s == nil {
		return
	}
	own := strings.TrimPrefix(s.url, "http://")
	fwd := func(proto, host, uri string) []string {
		return []string{"Accept: text/html", "X-Forwarded-Proto: " + proto, "X-Forwarded-Host: " + host, "X-Forwarded-Uri: " + uri}
	}
	for _, tc := range []struct {
		name    string
		headers []string
		rd      string
	}{
		{"listed host", fwd("https", "app.example.com", "/page?x=1&y=%2F"), "https://app.example.com/page?x=1&y=%2F"},
		{"own host", fwd("http", own, "/p"), "http://" + own + "/p"},
		{"other host", fwd("https", "evil.example", "/p"), "/"},
		{"userinfo", fwd("https", "app.example.com@evil.example", "/p"), "/"},
		{"look-alike", fwd("https", "app.example.com.evil.example", "/p"), "/"},
		{"uri without slash", fwd("https", "app.example.com", "@evil.example/"), "https://app.example.com/"},
		{"uri scheme-relative", fwd("https", "app.example.com", "//evil.example/"), "https://app.example.com//evil.example/"}, // a path on the listed host
		{"bad proto", fwd("javascript", "app.example.com", "/p"), "/p"},
		{"no forwarded headers", []string{"Accept: text/html"}, "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, "GET", "/auth/v4/verify?redirect=login", "", tc.headers...)
			if want := "/login?rd=" + url.QueryEscape(tc.rd); r.status != 302 || r.header.Get("Location") != want {
				t.Errorf("%d Location %q, want 302 %q", r.status, r.header.Get("Location"), want)
			}
		})
	}
	browser := fwd("https", "app.example.com", "/page")
	if r := s.do(t, "GET", "/auth/v4/verify", "", browser...); r.status != 401 {
		t.Errorf("plain verify (nginx) for a browser: %d, want 401", r.status)
	}
	if r := s.do(t, "GET", "/auth/v4/verify?redirect=login", "", "Accept: application/json"); r.status != 401 {
		t.Errorf("verify?redirect=login for an API client: %d, want 401", r.status)
	}
	tok := s.login(t, "alice")
	if r := s.do(t, "GET", "/auth/v4/verify?redirect=login", "", append(browser, s.cookie(tok))...); r.status != 200 ||
		r.header.Get("X-Forwarded-User") != s.fx.Login("alice") {
		t.Errorf("verify with a session: %d %v", r.status, r.header)
	}

	// The form login follows the same rule, and shares the cookie.
	form := func(rd string) reply {
		return s.do(t, "POST", "/login", url.Values{"username": {s.fx.Login("bob")}, "password": {ldaptest.Password}, "rd": {rd}}.Encode())
	}
	r := form("https://app.example.com/page")
	if r.status != 303 || r.header.Get("Location") != "https://app.example.com/page" {
		t.Errorf("form login to a listed host: %d %q", r.status, r.header.Get("Location"))
	}
	if c, err := http.ParseSetCookie(r.header.Get("Set-Cookie")); err != nil || c.Domain != "example.com" {
		t.Errorf("cookie %q: want Domain=example.com", r.header.Get("Set-Cookie"))
	}
	if r := form("https://evil.example/page"); r.status != 303 || r.header.Get("Location") != "/" {
		t.Errorf("form login to another host: %d %q", r.status, r.header.Get("Location"))
	}
	if p := s.do(t, "GET", "/login?rd="+url.QueryEscape("https://app.example.com/page"), ""); !strings.Contains(string(p.body), `name="rd" value="https://app.example.com/page"`) {
		t.Errorf("login page dropped a listed rd:\n%s", p.body)
	}
}
