package console

import (
	"regexp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
)

func serve(c *Console, method, uri string, u *account.User) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	called := false
	c.Serve(&ctx, func() (account.User, bool) {
		called = true
		if u == nil {
			return account.User{}, false
		}
		return *u, true
	})
	if called && strings.HasPrefix(uri, Prefix+"/static/") {
		panic("static assets must not look up the caller")
	}
	var r fasthttp.Response
	ctx.Response.CopyTo(&r)
	return &r
}

func TestAccess(t *testing.T) {
	c := New(&config.Config{Roles: []string{"admin", "user"}}, nil)
	admin := &account.User{Username: "root@local", Role: "admin", State: account.StateActive}
	user := &account.User{Username: "bob@example.com", Role: "user", State: account.StateActive}
	blockedAdmin := &account.User{Username: "old@local", Role: "admin", State: account.StateBlocked}
	tests := []struct {
		name, method, uri string
		u                 *account.User
		status            int
		location          string
	}{
		{"no session goes to the login page", "GET", "/admin/users?state=active", nil, 302, "/login?rd=%2Fadmin%2Fusers%3Fstate%3Dactive"},
		{"non-admin", "GET", "/admin", user, 403, ""},
		{"inactive admin", "GET", "/admin", blockedAdmin, 403, ""},
		{"connections", "GET", "/admin", admin, 200, ""},
		{"connections with slash", "GET", "/admin/", admin, 200, ""},
		{"add", "GET", "/admin/connections/new", admin, 200, ""},
		{"connection", "GET", "/admin/connections/3", admin, 200, ""},
		{"run", "GET", "/admin/connections/3/runs/17", admin, 200, ""},
		{"users", "GET", "/admin/users", admin, 200, ""},
		{"log level", "GET", "/admin/settings", admin, 200, ""},
		{"unknown page", "GET", "/admin/nothing", admin, 404, ""},
		{"connection id not a number", "GET", "/admin/connections/x", admin, 404, ""},
		{"pages are GET only", "POST", "/admin", admin, 405, ""},
		{"HEAD", "HEAD", "/admin", admin, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := serve(c, tc.method, tc.uri, tc.u)
			if r.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode(), tc.status)
			}
			if got := string(r.Header.Peek("Location")); got != tc.location {
				t.Fatalf("Location %q, want %q", got, tc.location)
			}
			if tc.status == 200 || tc.status == 403 || tc.status == 404 && tc.method == "GET" {
				if got := string(r.Header.Peek("Content-Security-Policy")); got != csp {
					t.Fatalf("CSP %q", got)
				}
				if string(r.Header.Peek("X-Frame-Options")) != "DENY" || string(r.Header.Peek("Cache-Control")) != "no-store" {
					t.Fatalf("headers: %s", r.Header.String())
				}
			}
		})
	}

	// SIGHUP with new roles: the admin role is the first of them.
	c.Reload(&config.Config{Roles: []string{"owner", "admin"}})
	if r := serve(c, "GET", "/admin", admin); r.StatusCode() != 403 {
		t.Fatalf("after reload an admin (no longer the highest role) got %d", r.StatusCode())
	}
}

func TestStaticAssets(t *testing.T) {
	c := New(&config.Config{}, nil)
	for name, ctype := range map[string]string{"console.js": "text/javascript", "console.css": "text/css"} {
		a := c.assets[name]
		r := serve(c, "GET", Prefix+"/static/"+name+"?v="+a.hash, nil)
		if r.StatusCode() != 200 || !strings.HasPrefix(string(r.Header.ContentType()), ctype) ||
			string(r.Header.Peek("Cache-Control")) != "public, max-age=31536000, immutable" || len(r.Body()) == 0 {
			t.Fatalf("%s: %d %s", name, r.StatusCode(), r.Header.String())
		}
		// Any other version must be revalidated: it may be an old page's.
		if r := serve(c, "GET", Prefix+"/static/"+name+"?v=old", nil); string(r.Header.Peek("Cache-Control")) != "no-cache" {
			t.Fatalf("%s unversioned: %s", name, r.Header.String())
		}
	}
	if r := serve(c, "GET", Prefix+"/static/console.go", nil); r.StatusCode() != 404 {
		t.Fatalf("unknown asset: %d", r.StatusCode())
	}
}

// TestPagesKeepTheirPolicy: what the CSP forbids never appears in a page
// (no inline script or style, nothing from another origin), and every
// form field has a label: the browser tests find fields by label text.
func TestPagesKeepTheirPolicy(t *testing.T) {
	c := New(&config.Config{Roles: []string{"admin", "user"}}, nil)
	admin := &account.User{Username: "root@local", Role: "admin", State: account.StateActive}
	var (
		script  = regexp.MustCompile(`<script[^>]*>`)
		foreign = regexp.MustCompile(`(?i)(src|href|action)="(https?:)?//`)
		control = regexp.MustCompile(`<(input|select|textarea)\b[^>]*>`)
		idAttr  = regexp.MustCompile(`\bid="([^"]+)"`)
		forAttr = regexp.MustCompile(`<label[^>]*\bfor="([^"]+)"`)
	)
	for _, uri := range []string{"/admin", "/admin/connections/new", "/admin/connections/1", "/admin/connections/1/runs/1", "/admin/users", "/admin/settings"} {
		page := string(serve(c, "GET", uri, admin).Body())
		if strings.Contains(page, "<style") || strings.Contains(page, " style=") || strings.Contains(page, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(page) {
			t.Errorf("%s has inline style or handlers", uri)
		}
		for _, s := range script.FindAllString(page, -1) {
			if !strings.Contains(s, `src="/admin/static/`) {
				t.Errorf("%s: inline or foreign script %s", uri, s)
			}
		}
		if m := foreign.FindString(page); m != "" {
			t.Errorf("%s: asset from another origin: %s", uri, m)
		}
		labelled := map[string]bool{}
		for _, m := range forAttr.FindAllStringSubmatch(page, -1) {
			labelled[m[1]] = true
		}
		for _, ctl := range control.FindAllString(page, -1) {
			if strings.Contains(ctl, `type="hidden"`) {
				continue
			}
			m := idAttr.FindStringSubmatch(ctl)
			if m == nil || !labelled[m[1]] {
				t.Errorf("%s: field without a label: %s", uri, ctl)
			}
		}
	}
}
