package e2e

import (
	"path/filepath"
	"testing"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// TestConfigDirectoryDroppedThenRenamed: deleting a directory's settings
// from the file blocks its users (rule 9, as the platform guide says of a
// deleted connection) and ends their sessions on SIGHUP; putting the same
// directory back under another name gives the accounts back after a sync,
// instead of locking everyone out for good.
func TestConfigDirectoryDroppedThenRenamed(t *testing.T) {
	bin := opsBinary(t)
	fx := ldaptest.StartSlapd(t).NewFixture(t)
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "")
	path := filepath.Join(t.TempDir(), "config.yaml")
	c.Extra = "directories:\n" + dirYAML("corp", fx, "")
	writeConfig(t, path, c.yaml())
	p := startBinary(t, bin, path, c.Listen)
	g := &gate{t: t, base: p.base}

	g.must(200, "POST", "/auth/v4/ldap/"+directoryID(t, g, "corp")+"/sync", "admin", nil)
	token := g.login(fx.Login("alice"), ldaptest.Password)
	aliceID := id(users(g.must(200, "GET", "/auth/v4/user", "admin", nil))[fx.Login("alice")]["id"])

	// The directory is gone from the file.
	c.Extra = ""
	writeConfig(t, path, c.yaml())
	hup(t, p, "config reloaded")
	u := g.must(200, "GET", "/auth/v4/user/"+aliceID, "admin", nil)
	if u["state"] != "blocked" || u["block_reason"] != "directory_removed" {
		t.Fatalf("alice after her directory left the file: %v", u)
	}
	g.must(401, "GET", "/auth/v4/whoami", token, nil)

	// The same directory, renamed: its sync adopts the same accounts.
	c.Extra = "directories:\n" + dirYAML("corp-renamed", fx, "")
	writeConfig(t, path, c.yaml())
	hup(t, p, "config reloaded")
	newID := directoryID(t, g, "corp-renamed")
	run := g.must(200, "POST", "/auth/v4/ldap/"+newID+"/sync", "admin", nil)
	if run["result"] != "success" {
		t.Fatalf("sync of the renamed directory: %v", run)
	}
	u = g.must(200, "GET", "/auth/v4/user/"+aliceID, "admin", nil)
	if u["state"] != "active" || id(u["directory_id"]) != newID || u["role"] != "admin" {
		t.Fatalf("alice after the renamed directory's sync: %v", u)
	}
	g.login(fx.Login("alice"), ldaptest.Password)
}
