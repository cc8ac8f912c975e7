package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/internal/pgtest"
)

// TestMigrateStoreToPostgres: `ldapgate migrate-store` copies a one-box
// badger store into PostgreSQL (SPEC §12): users keep their ids, states
// and reasons, runs their audit; sessions are dropped and it says so; a
// second copy into the now non-empty store is refused.
func TestMigrateStoreToPostgres(t *testing.T) {
	bin := opsBinary(t)
	fx := ldaptest.StartSlapd(t).NewFixture(t)
	dirs := "directories:\n" + dirYAML("corp", fx, "")
	c := newOpsConfig(t, upstream(t), dirs)
	cfgPath := filepath.Join(t.TempDir(), "badger.yaml")
	writeConfig(t, cfgPath, c.yaml())
	p := startBinary(t, bin, cfgPath, c.Listen)
	g := &gate{t: t, base: p.base}
	list := g.must(200, "GET", "/auth/v4/ldap", "admin", nil)
	dirID := fmt.Sprint(list["list"].([]any)[0].(map[string]any)["id"])
	g.must(200, "POST", "/auth/v4/ldap/"+dirID+"/sync", "admin", nil)
	g.login(fx.Login("alice"), ldaptest.Password) // a session, to be dropped
	before := users(g.must(200, "GET", "/auth/v4/user", "admin", nil))
	bob := before[fx.Login("bob")]
	g.must(200, "POST", fmt.Sprintf("/auth/v4/user/%v/block", bob["id"]), "admin", nil)
	before = users(g.must(200, "GET", "/auth/v4/user", "admin", nil))
	p.signal(syscall.SIGTERM)
	<-p.done

	dsnFile := filepath.Join(t.TempDir(), "pg_dsn")
	if err := os.WriteFile(dsnFile, []byte(pgtest.DSN(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	pc := newOpsConfig(t, c.Upstream, fmt.Sprintf("store:\n  backend: postgres\n  postgres: {dsn_file: %q}\n%s", dsnFile, dirs))
	pgPath := filepath.Join(t.TempDir(), "pg.yaml")
	writeConfig(t, pgPath, pc.yaml())
	out, err := exec.Command(bin, "migrate-store", "-config", pgPath, "-from", "badger:"+c.DataDir, "-to", "postgres").CombinedOutput()
	if err != nil {
		t.Fatalf("migrate-store: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("copied %d users", len(before))) || !strings.Contains(string(out), "1 sessions were not copied") {
		t.Errorf("migrate-store said:\n%s", out)
	}

	p = startBinary(t, bin, pgPath, pc.Listen)
	g = &gate{t: t, base: p.base}
	after := users(g.must(200, "GET", "/auth/v4/user", "admin", nil))
	if len(after) != len(before) {
		t.Fatalf("%d users after, %d before", len(after), len(before))
	}
	for name, u := range before {
		a := after[name]
		for _, k := range []string{"id", "state", "block_reason", "role", "directory_id"} {
			if a == nil || fmt.Sprint(a[k]) != fmt.Sprint(u[k]) {
				t.Errorf("%s.%s: %v after, %v before", name, k, a[k], u[k])
			}
		}
		// PostgreSQL keeps microseconds.
		ca, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(a["created_at"]))
		cb, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(u["created_at"]))
		if !ca.Equal(cb.Truncate(time.Microsecond)) {
			t.Errorf("%s.created_at: %v after, %v before", name, ca, cb)
		}
	}
	runs := g.must(200, "GET", "/auth/v4/ldap/"+dirID+"/runs", "admin", nil)
	if n := len(runs["list"].([]any)); n != 1 {
		t.Errorf("%d runs after the copy, want 1", n)
	}
	g.login(fx.Login("alice"), ldaptest.Password)
	g.must(403, "POST", "/auth/v4/public/token", "", map[string]string{"username": fx.Login("bob"), "password": ldaptest.Password})
	// New users get new ids after the copied ones.
	local := g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{"username": "new@local", "password": "new-password-1"})
	for name, u := range before {
		if fmt.Sprint(u["id"]) == fmt.Sprint(local["id"]) {
			t.Errorf("new user got id %v, %s's", local["id"], name)
		}
	}

	out, err = exec.Command(bin, "migrate-store", "-config", pgPath, "-from", "badger:"+c.DataDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not empty") {
		t.Errorf("a second copy: %v\n%s", err, out)
	}
}
