package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/app"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

const adminToken = "test-admin-token-0123456789abcdef"

// gate is ldapgate running in-process (the same app.Run as `serve`).
type gate struct {
	t    *testing.T
	base string
}

func startGate(t *testing.T, extraYAML string) *gate {
	t.Helper()
	addr, path := gateConfig(t, extraYAML)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	var logs logBuf
	go func() {
		done <- app.Run(ctx, cfg, app.Options{
			Ready:  func() { close(ready) },
			Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("app.Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("app did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app.Run: %v", err)
		}
		if t.Failed() {
			t.Logf("ldapgate log:\n%s", logs.String())
		}
	})
	return &gate{t: t, base: "http://" + addr}
}

// gateConfig writes a config for a gate on a free address with the admin
// token, a fresh store and the test upstream, plus extraYAML.
func gateConfig(t *testing.T, extraYAML string) (addr, path string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin_token")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr = freePort(t)
	yaml := fmt.Sprintf("listen: %q\nmetrics_listen: %q\nupstream: %q\ndata_dir: %q\nadmin_token_file: %q\nsession: {secure_cookie: false}\n%s",
		addr, freePort(t), upstream(t), filepath.Join(dir, "data"), tokenFile, extraYAML)
	path = filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return addr, path
}

// call sends a request; auth is "admin" (the admin token), "" (nothing), or
// a session token.
func (g *gate) call(method, path, auth string, body any) (int, map[string]any, []byte) {
	g.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, g.base+path, rd)
	switch auth {
	case "":
	case "admin":
		req.Header.Set("Authorization", "Bearer "+adminToken)
	default:
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, raw
}

// must asserts the status and returns the decoded body.
func (g *gate) must(want int, method, path, auth string, body any) map[string]any {
	g.t.Helper()
	code, out, raw := g.call(method, path, auth, body)
	if code != want {
		g.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, raw)
	}
	return out
}

// login returns a session token for name/password, or fails the test.
func (g *gate) login(name, password string) string {
	g.t.Helper()
	out := g.must(200, "POST", "/auth/v4/public/token", "", map[string]string{"username": name, "password": password})
	return out["token"].(string)
}

func directoryBody(fx *ldaptest.Fixture, name, naming, password string) map[string]any {
	d := fx.Dir
	return map[string]any{
		"name": name, "type": d.Type, "urls": d.URLs, "base_dn": d.BaseDN,
		"bind_dn": d.BindDN, "bind_password": password, "users_dn": d.UsersDN, "groups_dn": d.GroupsDN,
		"domain": d.Domain, "naming": naming, "role_mapping": d.RoleMapping, "note": "created by test",
	}
}

func users(out map[string]any) map[string]map[string]any {
	byName := map[string]map[string]any{}
	for _, u := range out["list"].([]any) {
		m := u.(map[string]any)
		byName[m["username"].(string)] = m
	}
	return byName
}

func id(v any) string { return fmt.Sprint(int64(v.(float64))) }

// TestAdminStory walks the platform guide's administration story through
// HTTP against a real slapd and a real store.
func TestAdminStory(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	g := startGate(t, "")
	password := fx.Dir.BindPassword.Reveal()

	// Without credentials: 401 everywhere in the admin API.
	for _, p := range []string{"/auth/v4/ldap", "/auth/v4/user"} {
		g.must(401, "GET", p, "", nil)
	}

	// Add a connection: a failing check refuses it and saves nothing.
	bad := directoryBody(fx, "corp", "username_at_domain", "wrong-password")
	out := g.must(422, "POST", "/auth/v4/ldap", "admin", bad)
	if out["error"].(map[string]any)["code"] != "ldap_check_failed" {
		t.Fatalf("bad connection answer %v", out)
	}
	if out := g.must(200, "GET", "/auth/v4/ldap", "admin", nil); out["size"].(float64) != 0 {
		t.Fatalf("a refused connection was saved: %v", out)
	}
	_, _, raw := g.call("POST", "/auth/v4/ldap", "admin", directoryBody(fx, "corp", "username_at_domain", password))
	var created map[string]any
	_ = json.Unmarshal(raw, &created)
	if created["id"] == nil {
		t.Fatalf("create: %s", raw)
	}
	if bytes.Contains(raw, []byte(password)) {
		t.Fatalf("create answer contains the bind password: %s", raw)
	}
	dirID := id(created["id"])
	// The name is taken now: a second directory called corp is a conflict.
	g.must(409, "POST", "/auth/v4/ldap", "admin", directoryBody(fx, "CORP", "username_at_domain", password))
	dirPath := "/auth/v4/ldap/" + dirID

	// Note; read back; never the password.
	g.must(200, "PATCH", dirPath, "admin", map[string]string{"note": "main office"})
	_, got, raw := g.call("GET", dirPath, "admin", nil)
	if got["note"] != "main office" || bytes.Contains(raw, []byte(password)) {
		t.Fatalf("after PATCH note: %s", raw)
	}

	// Check: counts the fixture's users (7 incl. star) and groups (4).
	out = g.must(200, "POST", dirPath+"/check", "admin", nil)
	if out["users"] != float64(len(fx.Users)) || out["groups"] != float64(len(fx.Groups)) || len(fx.Users) != 7 || len(fx.Groups) != 4 {
		t.Fatalf("check: %v, want %d users and %d groups", out, len(fx.Users), len(fx.Groups))
	}

	// Preview, JSON and CSV: alice would be created as admin.
	out = g.must(200, "GET", dirPath+"/preview", "admin", nil)
	var aliceRow map[string]any
	for _, r := range out["list"].([]any) {
		if m := r.(map[string]any); m["username"] == fx.Login("alice") {
			aliceRow = m
		}
	}
	if aliceRow == nil || aliceRow["role"] != "admin" || aliceRow["exists"] != false {
		t.Fatalf("preview row for alice: %v (all: %v)", aliceRow, out)
	}
	req, _ := http.NewRequest("GET", g.base+dirPath+"/preview?format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	csvBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(string(csvBody), "username,email,role,exists,action\n") ||
		!strings.Contains(string(csvBody), fx.Login("alice")+",") {
		t.Fatalf("csv preview: %s %q", resp.Header.Get("Content-Type"), csvBody)
	}

	// Dry run: the plan, answered and recorded as the run's changes (each
	// planned, none applied), and no users.
	out = g.must(200, "POST", dirPath+"/sync?dry_run=true", "admin", nil)
	if out["result"] != "dry_run" {
		t.Fatalf("dry run: %v", out)
	}
	creates := out["counts"].(map[string]any)["create"]
	planned := func(list []any) (n int, aliceCreate bool) {
		for _, c := range list {
			m := c.(map[string]any)
			if m["planned"] != true {
				t.Errorf("dry run change not marked planned: %v", m)
			}
			if m["action"] == "create" {
				n++
				if m["username"] == fx.Login("alice") && m["fields"].(map[string]any)["role"].([]any)[1] == "admin" {
					aliceCreate = true
				}
			}
		}
		return n, aliceCreate
	}
	if n, alice := planned(out["changes"].([]any)); creates == nil || float64(n) != creates.(float64) || !alice {
		t.Fatalf("dry run's answer: %d creates (counts say %v), alice's create as admin: %v\n%v", n, creates, alice, out)
	}
	dry := g.must(200, "GET", dirPath+"/runs/"+id(out["id"]), "admin", nil)
	if n, alice := planned(dry["list"].([]any)); float64(n) != creates.(float64) || !alice {
		t.Fatalf("dry run's recorded changes: %d creates, alice: %v\n%v", n, alice, dry)
	}
	if out := g.must(200, "GET", "/auth/v4/user?directory="+dirID, "admin", nil); out["size"].(float64) != 0 {
		t.Fatalf("dry run wrote users: %v", out)
	}

	// Sync now.
	out = g.must(200, "POST", dirPath+"/sync", "admin", nil)
	if out["result"] != "success" {
		t.Fatalf("sync: %v", out)
	}
	runID := id(out["id"])
	byName := users(g.must(200, "GET", "/auth/v4/user?directory="+dirID, "admin", nil))
	alice, bob := byName[fx.Login("alice")], byName[fx.Login("bob")]
	if alice == nil || alice["role"] != "admin" || bob == nil || bob["role"] != "user" {
		t.Fatalf("users after sync: %v", byName)
	}
	if c := byName[fx.Login("carol")]; c == nil || c["state"] != "blocked_in_ldap" {
		t.Fatalf("carol after sync: %v", c)
	}

	// The connections list carries what the console's table shows: user
	// counts by state and the last run.
	list := g.must(200, "GET", "/auth/v4/ldap", "admin", nil)["list"].([]any)
	item := list[0].(map[string]any)
	counts, _ := item["users"].(map[string]any)
	last, _ := item["last_run"].(map[string]any)
	if counts["active"] == nil || counts["active"].(float64) < 4 || counts["blocked_in_ldap"] != 1.0 ||
		last["id"] == nil || id(last["id"]) != runID || last["result"] != "success" {
		t.Fatalf("connections list item: users %v, last_run %v", counts, last)
	}
	// Text search over username, email and display name, any case.
	found := users(g.must(200, "GET", "/auth/v4/user?q="+strings.ToUpper(fx.Users["alice"]), "admin", nil))
	if len(found) != 1 || found[fx.Login("alice")] == nil {
		t.Fatalf("q=%s: %v", fx.Users["alice"], found)
	}
	// The next run times of a schedule, as the server computes them.
	next := g.must(200, "GET", "/auth/v4/ldap/schedule?expr=weekly%20mon%2003:00", "admin", nil)["next"].([]any)
	for _, v := range next {
		if at, err := time.Parse(time.RFC3339, v.(string)); err != nil || at.Weekday() != time.Monday {
			t.Fatalf("next runs %v", next)
		}
	}
	if len(next) != 3 {
		t.Fatalf("next runs %v", next)
	}
	g.must(422, "GET", "/auth/v4/ldap/schedule?expr=weekly", "admin", nil)
	g.must(403, "GET", "/auth/v4/ldap/schedule?expr=hourly", g.login(fx.Login("bob"), ldaptest.Password), nil)

	// Runs: both listed; the real one's changes include alice's creation.
	if out := g.must(200, "GET", dirPath+"/runs", "admin", nil); out["size"].(float64) < 2 {
		t.Fatalf("runs: %v", out)
	}
	out = g.must(200, "GET", dirPath+"/runs/"+runID, "admin", nil)
	aliceCreated := false
	for _, c := range out["list"].([]any) {
		m := c.(map[string]any)
		if m["username"] == fx.Login("alice") && m["action"] == "create" {
			aliceCreated = true
		}
	}
	if !aliceCreated {
		t.Fatalf("run changes lack alice's create: %v", out)
	}

	// A non-admin session is refused (403); bob is a plain user.
	bobToken := g.login(fx.Login("bob"), ldaptest.Password)
	g.must(403, "GET", "/auth/v4/ldap", bobToken, nil)
	g.must(403, "POST", dirPath+"/sync", bobToken, nil)
	g.must(403, "GET", "/auth/v4/user", bobToken, nil)
	// An admin session is allowed.
	aliceToken := g.login(fx.Login("alice"), ldaptest.Password)
	g.must(200, "GET", "/auth/v4/ldap", aliceToken, nil)

	// Block and unblock bob: blocked ends his session and refuses his login.
	bobID := id(bob["id"])
	out = g.must(200, "POST", "/auth/v4/user/"+bobID+"/block", "admin", nil)
	if out["state"] != "blocked" || out["block_reason"] != "admin" {
		t.Fatalf("block: %v", out)
	}
	g.must(401, "GET", "/auth/v4/whoami", bobToken, nil)
	g.must(403, "POST", "/auth/v4/public/token", "", map[string]string{"username": fx.Login("bob"), "password": ldaptest.Password})
	// An admin block survives a sync (rule 10).
	g.must(200, "POST", dirPath+"/sync", "admin", nil)
	if u := g.must(200, "GET", "/auth/v4/user/"+bobID, "admin", nil); u["state"] != "blocked" {
		t.Fatalf("sync undid the admin block: %v", u)
	}
	g.must(200, "POST", "/auth/v4/user/"+bobID+"/unblock", "admin", nil)
	g.must(401, "GET", "/auth/v4/whoami", bobToken, nil) // ended by the block for good
	bobToken = g.login(fx.Login("bob"), ldaptest.Password)

	// LDAP users' passwords live in the directory: 409.
	g.must(409, "POST", "/auth/v4/user/"+bobID+"/password", "admin", map[string]string{"password": "x"})

	// A local user: created, password set, logs in with the new one only.
	out = g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{
		"username": "ops@local", "password": "first-pass", "role": "advanced_user", "email": "ops@example.net"})
	opsID := id(out["id"])
	if out["source"] != "local" || out["role"] != "advanced_user" {
		t.Fatalf("local user: %v", out)
	}
	g.must(409, "POST", "/auth/v4/user", "admin", map[string]string{"username": "OPS@local", "password": "x"})
	g.must(200, "POST", "/auth/v4/user/"+opsID+"/password", "admin", map[string]string{"password": "second-pass"})
	g.must(401, "POST", "/auth/v4/public/token", "", map[string]string{"username": "ops@local", "password": "first-pass"})
	g.login("ops@local", "second-pass")

	// Log level at run time on listen: admin credentials only (internal-auth
	// is for metrics_listen, TestLogLevelInternalAuthOnMetricsListenOnly).
	g.must(200, "POST", "/auth/v4/internal/settings/log/level", "admin", "debug")
	g.must(400, "POST", "/auth/v4/internal/settings/log/level", "admin", "loud")
	g.must(401, "POST", "/auth/v4/internal/settings/log/level", "", "info")
	g.must(403, "POST", "/auth/v4/internal/settings/log/level", bobToken, "debug")

	// Delete the connection: every user of it is blocked (rule 9).
	g.must(200, "DELETE", dirPath, "admin", nil)
	g.must(404, "GET", dirPath, "admin", nil)
	u := g.must(200, "GET", "/auth/v4/user?state=blocked", "admin", nil)
	blocked := users(u)
	for _, name := range []string{"alice", "bob", "dave", "frank"} {
		if b := blocked[fx.Login(name)]; b == nil || b["block_reason"] != "directory_removed" {
			t.Fatalf("%s after directory delete: %v", name, b)
		}
	}
	g.must(401, "GET", "/auth/v4/whoami", aliceToken, nil)
}

// TestMigrateThroughAPI: a legacy directory (mail as the username) is
// migrated to username@domain; a taken name cancels it with no change.
func TestMigrateThroughAPI(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	g := startGate(t, "")
	// Each fixture user's mail is <uid>@example.com, which is also the new
	// name: give alice another mail so her rename is visible.
	conn := srv.AdminConn(t)
	aliceDN := "uid=" + fx.Users["alice"] + "," + fx.Dir.UsersDN + "," + fx.Dir.BaseDN
	if err := modifyMail(conn, aliceDN, "alice.legacy@corp.example"); err != nil {
		t.Fatal(err)
	}
	body := directoryBody(fx, "legacy", "email", fx.Dir.BindPassword.Reveal())
	created := g.must(200, "POST", "/auth/v4/ldap", "admin", body)
	dirPath := "/auth/v4/ldap/" + id(created["id"])
	g.must(200, "POST", dirPath+"/sync", "admin", nil)
	byName := users(g.must(200, "GET", "/auth/v4/user", "admin", nil))
	if byName["alice.legacy@corp.example"] == nil {
		t.Fatalf("legacy naming: %v", byName)
	}

	// A local user already holds alice's new name: cancelled, 409, no change.
	local := g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{"username": fx.Login("alice"), "password": "p"})
	out := g.must(409, "POST", dirPath+"/migrate", "admin", nil)
	if v, _ := out["error"].(map[string]any)["value"].([]any); len(v) != 1 || v[0] != fx.Login("alice") {
		t.Fatalf("conflict answer: %v", out)
	}
	if byName := users(g.must(200, "GET", "/auth/v4/user", "admin", nil)); byName["alice.legacy@corp.example"] == nil {
		t.Fatalf("cancelled migration changed names: %v", byName)
	}

	g.must(200, "DELETE", "/auth/v4/user/"+id(local["id"]), "admin", nil)
	g.must(200, "POST", dirPath+"/migrate", "admin", nil)
	byName = users(g.must(200, "GET", "/auth/v4/user", "admin", nil))
	if byName[fx.Login("alice")] == nil || byName["alice.legacy@corp.example"] != nil {
		t.Fatalf("after migration: %v", byName)
	}
	if d := g.must(200, "GET", dirPath, "admin", nil); d["naming"] != "username_at_domain" {
		t.Fatalf("directory naming after migration: %v", d["naming"])
	}
	g.login(fx.Login("alice"), ldaptest.Password)
}
