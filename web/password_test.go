package web

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

func changeBody(name, oldPw, newPw string) string {
	b, _ := json.Marshal(map[string]string{"username": name, "old_password": oldPw, "new_password": newPw})
	return string(b)
}

// TestPasswordEndpoint: POST /auth/v4/public/password over real slapd
// (SPEC §13): a must-change user is told so by the token login, changes
// the password (the directory's reason when its policy refuses), is
// logged in like the token login, and the user's older sessions end.
func TestPasswordEndpoint(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	s.fx.AddUser(t, "reset", "staff")
	s.fx.SetMustChangePassword(t, "reset")
	pw, newPw := ldaptest.Password, "Changed-Pass-2"
	reset := s.fx.Login("reset")

	if r := s.do(t, "POST", "/auth/v4/public/token", loginBody(reset, pw)); r.status != 403 || r.errCode(t) != "password_change_required" {
		t.Fatalf("token login of a must-change user: %d %s", r.status, r.body)
	}
	if r := s.do(t, "POST", "/auth/v4/public/token", loginBody(reset, "Wrong-Pass1")); r.status != 401 || r.errCode(t) != "bad_credentials" {
		t.Fatalf("token login of a must-change user, wrong password: %d %s", r.status, r.body)
	}
	if r := s.do(t, "GET", "/auth/v4/public/password", ""); r.status != 405 {
		t.Fatalf("GET: %d", r.status)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"wrong old password", changeBody(reset, "Wrong-Pass1", newPw), 401, "bad_credentials", ""},
		{"unknown user", changeBody(s.fx.Prefix+"zed@example.com", pw, newPw), 401, "bad_credentials", ""},
		{"empty old password", changeBody(reset, "", newPw), 401, "bad_credentials", ""},
		{"too short for the policy", changeBody(reset, pw, "Short-1"), 422, "password_refused", "too short"},
		{"bad JSON", `{"username":`, 400, "bad_json", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, "POST", "/auth/v4/public/password", tc.body)
			if r.status != tc.status || r.errCode(t) != tc.code || !strings.Contains(string(r.body), tc.msg) {
				t.Fatalf("%d %s, want %d %s saying %q", r.status, r.body, tc.status, tc.code, tc.msg)
			}
			if len(r.header.Values("Set-Cookie")) != 0 {
				t.Fatal("cookie set on failure")
			}
		})
	}

	r := s.do(t, "POST", "/auth/v4/public/password", changeBody(reset, pw, newPw))
	if r.status != 200 || len(r.header.Values("Set-Cookie")) != 1 {
		t.Fatalf("change: %d %s", r.status, r.body)
	}
	var a struct {
		Token string `json:"token"`
	}
	r.json(t, &a)
	if w := s.do(t, "GET", "/auth/v4/whoami", "", "Authorization: Bearer "+a.Token); w.status != 200 || !strings.Contains(string(w.body), reset) {
		t.Fatalf("whoami after the change: %d %s", w.status, w.body)
	}
	if r := s.do(t, "POST", "/auth/v4/public/token", loginBody(reset, newPw)); r.status != 200 {
		t.Fatalf("login with the new password: %d %s", r.status, r.body)
	}

	// A change ends the sessions made before it (SPEC §5).
	old := s.login(t, "bob")
	if r := s.do(t, "POST", "/auth/v4/public/password", changeBody(s.fx.Login("bob"), pw, newPw)); r.status != 200 {
		t.Fatalf("bob's change: %d %s", r.status, r.body)
	}
	if w := s.do(t, "GET", "/auth/v4/whoami", "", "Authorization: Bearer "+old); w.status != 401 {
		t.Fatalf("a session from before the change: %d", w.status)
	}
}

// TestPasswordEndpointLimited: wrong old passwords count as failed logins
// (SPEC §5 limits), so the endpoint is no way around them.
func TestPasswordEndpointLimited(t *testing.T) {
	s := newStack(t, stackOpts{tweak: func(c *config.Config) { c.Login.MaxFailures = 2 }})
	if s == nil {
		return
	}
	alice := s.fx.Login("alice")
	for range 2 {
		if r := s.do(t, "POST", "/auth/v4/public/password", changeBody(alice, "Wrong-Pass1", "Changed-Pass-2")); r.status != 401 {
			t.Fatalf("wrong old password: %d %s", r.status, r.body)
		}
	}
	if r := s.do(t, "POST", "/auth/v4/public/password", changeBody(alice, ldaptest.Password, "Changed-Pass-2")); r.status != 429 ||
		r.header.Get("Retry-After") == "" {
		t.Fatalf("after the limit: %d %s", r.status, r.body)
	}
	if r := s.do(t, "POST", "/auth/v4/public/token", loginBody(alice, ldaptest.Password)); r.status != 429 {
		t.Fatalf("login after failed changes: %d", r.status)
	}
}

// TestPasswordChangeForm: /login's change form (SPEC §13) without a
// browser: a must-change login lands on it with status 403, repeated new
// passwords must match, every field is labelled.
func TestPasswordChangeForm(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	s.fx.AddUser(t, "reset", "staff")
	s.fx.SetMustChangePassword(t, "reset")
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	r := s.do(t, "POST", "/login", form("username", s.fx.Login("reset"), "password", ldaptest.Password, "rd", "/x"))
	body := string(r.body)
	if r.status != 403 || !strings.Contains(body, `id="new_password2"`) || !strings.Contains(body, "must be changed") {
		t.Fatalf("must-change login on the form: %d %s", r.status, body)
	}
	for _, id := range []string{"username", "old_password", "new_password", "new_password2"} {
		if !strings.Contains(body, `<label for="`+id+`">`) {
			t.Errorf("field %s has no label", id)
		}
	}
	r = s.do(t, "POST", "/login", form("mode", "change", "username", s.fx.Login("reset"), "old_password", ldaptest.Password,
		"new_password", "Changed-Pass-2", "new_password2", "Changed-Pass-3"))
	if r.status != 422 || !strings.Contains(string(r.body), "do not match") {
		t.Fatalf("mismatched new passwords: %d %s", r.status, r.body)
	}
	r = s.do(t, "POST", "/login", form("mode", "change", "username", s.fx.Login("reset"), "old_password", ldaptest.Password,
		"new_password", "Changed-Pass-2", "new_password2", "Changed-Pass-2", "rd", "/x"))
	if r.status != 303 || r.header.Get("Location") != "/x" || len(r.header.Values("Set-Cookie")) != 1 {
		t.Fatalf("change through the form: %d %v %s", r.status, r.header, r.body)
	}
	if r := s.do(t, "GET", "/login?change=1", ""); r.status != 200 || !strings.Contains(string(r.body), `id="old_password"`) {
		t.Fatalf("GET /login?change=1: %d", r.status)
	}
}
