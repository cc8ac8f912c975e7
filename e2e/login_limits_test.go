package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip: the server sees ip as the peer, a real distinct client
// address with no trusted proxy or X-Forwarded-For involved.
// send does one request with c and returns the status and Retry-After.
func send(t *testing.T, c *http.Client, method, u, contentType, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// Finding 3 (issue 10), with the real binary and real source addresses:
// wrong passwords for a name from 127.0.0.2 used to refuse that name from
// every address for the whole window, right password or not. Now only the
// attacker's (name, address) pair is refused (429 with Retry-After); the
// owner logs in from 127.0.0.3 — a directory user over the login API, the
// local break-glass admin over the HTML form, and a user over Basic.
func TestNoLockoutFromAnotherAddress(t *testing.T) {
	bin := opsBinary(t)
	srv := ldaptest.StartSlapd(t)
	if srv == nil {
		return
	}
	fx := srv.NewFixture(t)
	hash, err := auth.HashPassword("break-glass")
	if err != nil {
		t.Fatal(err)
	}
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "directories:\n"+dirYAML("corp", fx, "")+
		fmt.Sprintf("local_users:\n  - {username: root@local, password_hash: %q, role: admin}\n", hash))
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())
	p := startBinary(t, bin, path, c.Listen)

	attacker, owner := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	const maxFailures = 5 // login.max_failures default
	for _, tc := range []struct {
		name    string
		attempt func(cl *http.Client, pw string) (int, string)
		pw      string
		ok      int
	}{
		{"directory user, login API", func(cl *http.Client, pw string) (int, string) {
			b, _ := json.Marshal(map[string]string{"username": fx.Login("alice"), "password": pw})
			return send(t, cl, "POST", p.base+"/auth/v4/public/token", "application/json", string(b))
		}, ldaptest.Password, http.StatusOK},
		{"root@local, login form", func(cl *http.Client, pw string) (int, string) {
			form := url.Values{"username": {"root@local"}, "password": {pw}, "rd": {"/"}}.Encode()
			return send(t, cl, "POST", p.base+"/login", "application/x-www-form-urlencoded", form)
		}, "break-glass", http.StatusSeeOther},
		{"basic auth", func(cl *http.Client, pw string) (int, string) {
			return send(t, cl, "GET", p.base+"/auth/v4/whoami", "", "", "Authorization", basic(fx.Login("bob"), pw))
		}, ldaptest.Password, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range maxFailures + 3 {
				code, retry := tc.attempt(attacker, fmt.Sprintf("guess-%d", i))
				switch {
				case i < maxFailures && code != http.StatusUnauthorized:
					t.Fatalf("guess %d from 127.0.0.2: status %d, want 401", i, code)
				case i >= maxFailures && (code != http.StatusTooManyRequests || retry == ""):
					t.Fatalf("guess %d from 127.0.0.2: status %d, Retry-After %q; want 429 with Retry-After", i, code, retry)
				}
			}
			if code, _ := tc.attempt(attacker, tc.pw); code != http.StatusTooManyRequests {
				t.Fatalf("right password from 127.0.0.2: %d, want 429 (its pair is over the limit)", code)
			}
			if code, _ := tc.attempt(owner, tc.pw); code != tc.ok {
				t.Fatalf("the owner from 127.0.0.3: status %d, want %d", code, tc.ok)
			}
		})
	}
}

// Finding 8 (issue 10), with the real binary: a password change — through
// the admin API, or a local_users hash changed on SIGHUP — ends the user's
// sessions (401 on the next request) and the old password stops working
// over Basic at once, though a success with it was cached. The 21st login
// ends the first session (session.max_per_user, default 20).
func TestPasswordChangeEndsSessionsE2E(t *testing.T) {
	bin := opsBinary(t)
	hashOf := func(pw string) string {
		h, err := auth.HashPassword(pw)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "")
	local := func(pw string) string {
		return fmt.Sprintf("local_users:\n  - {username: root@local, password_hash: %q, role: admin}\n", hashOf(pw))
	}
	c.Extra = local("first-password")
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())
	p := startBinary(t, bin, path, c.Listen)
	g := &gate{t: t, base: p.base}
	whoami := func(header ...string) int {
		code, _ := get(t, p.base+"/auth/v4/whoami", header...)
		return code
	}
	basicOK := func(user, pw string) {
		t.Helper()
		for range 2 { // the second is served from the Basic cache
			if code := whoami("Authorization", basic(user, pw)); code != http.StatusOK {
				t.Fatalf("basic %s: %d", user, code)
			}
		}
	}

	t.Run("local_users on SIGHUP", func(t *testing.T) {
		tok := g.login("root@local", "first-password")
		basicOK("root@local", "first-password")
		c.Extra = local("second-password")
		writeConfig(t, path, c.yaml())
		hup(t, p, "config reloaded")
		if code := whoami("Authorization", "Bearer "+tok); code != http.StatusUnauthorized {
			t.Fatalf("old session after the change: %d, want 401", code)
		}
		if code := whoami("Authorization", basic("root@local", "first-password")); code != http.StatusUnauthorized {
			t.Fatalf("basic with the old password: %d, want 401", code)
		}
		basicOK("root@local", "second-password")
	})

	t.Run("admin API", func(t *testing.T) {
		u := g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{"username": "ops@local", "password": "p-one", "role": "user"})
		tok := g.login("ops@local", "p-one")
		basicOK("ops@local", "p-one")
		g.must(200, "POST", "/auth/v4/user/"+id(u["id"])+"/password", "admin", map[string]string{"password": "p-two"})
		if code := whoami("Authorization", "Bearer "+tok); code != http.StatusUnauthorized {
			t.Fatalf("old session after the change: %d, want 401", code)
		}
		if code := whoami("Authorization", basic("ops@local", "p-one")); code != http.StatusUnauthorized {
			t.Fatalf("basic with the old password: %d, want 401", code)
		}
		basicOK("ops@local", "p-two")
	})

	t.Run("the 21st login ends the first session", func(t *testing.T) {
		var toks []string
		for range 21 {
			toks = append(toks, g.login("ops@local", "p-two"))
		}
		if code := whoami("Authorization", "Bearer "+toks[0]); code != http.StatusUnauthorized {
			t.Fatalf("first session: %d, want 401", code)
		}
		for i, tok := range toks[1:] {
			if code := whoami("Authorization", "Bearer "+tok); code != http.StatusOK {
				t.Fatalf("session %d: %d, want 200", i+2, code)
			}
		}
	})
}
