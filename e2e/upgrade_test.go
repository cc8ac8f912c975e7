package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/internal/pgtest"
)

// releaseCommit is the main of the first tranche (eeaaaf9): the first
// release (v0.1.0). The upgrade test builds it from the repository's own
// history, so a store it writes is exactly what operators have on disk. The
// full hash: a short one may become ambiguous as the history grows.
const releaseCommit = "eeaaaf99e6787979c62c615e0ca8fed2a655044f"

var releaseBin struct {
	once sync.Once
	dir  string
	path string
	err  error
	took time.Duration
}

// releaseBinary builds releaseCommit once per test run. A clone without
// that commit (a shallow one) skips the test, or fails it in CI
// (LDAPGATE_REQUIRE_REAL_LDAP=1): CI must never pass by skipping it.
func releaseBinary(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command("git", "-C", "..", "cat-file", "-e", releaseCommit+"^{commit}").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("the upgrade test builds the first release from commit %.7s, which this clone lacks "+
			"(a shallow clone? fetch the full history: git fetch --unshallow, or actions/checkout's fetch-depth: 0): %v %s",
			releaseCommit, err, strings.TrimSpace(string(out)))
		if ldaptest.RequireReal() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	b := &releaseBin
	b.once.Do(func() {
		start := time.Now()
		defer func() { b.took = time.Since(start) }()
		if b.dir, b.err = os.MkdirTemp("", "ldapgate-release-"); b.err != nil {
			return
		}
		src := filepath.Join(b.dir, "src")
		tarball := filepath.Join(b.dir, "src.tar")
		b.path = filepath.Join(b.dir, "ldapgate-v0.1.0")
		for _, c := range []struct {
			dir  string
			args []string
		}{
			{"..", []string{"git", "archive", "--format=tar", "-o", tarball, releaseCommit}},
			{b.dir, []string{"mkdir", src}},
			{b.dir, []string{"tar", "-xf", tarball, "-C", src}},
			// The Dockerfile's build; no VCS stamp (the tree has no .git).
			{src, []string{"go", "build", "-buildvcs=false", "-ldflags", "-X main.version=v0.1.0", "-o", b.path, "."}},
		} {
			cmd := exec.Command(c.args[0], c.args[1:]...)
			cmd.Dir = c.dir
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("%s: %w\n%s", strings.Join(c.args, " "), err, out)
				return
			}
		}
	})
	if b.err != nil {
		t.Fatalf("building the release %.7s: %v", releaseCommit, b.err)
	}
	t.Logf("release %.7s built in %v (once per test run)", releaseCommit, b.took.Round(time.Millisecond))
	return b.path
}

// stopBinary sends SIGTERM and waits for a clean exit.
func stopBinary(t *testing.T, p *proc) {
	t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("ldapgate did not stop on SIGTERM\n%s", p.stderr.String())
	}
	if p.err != nil {
		t.Fatalf("ldapgate exited with %v\n%s", p.err, p.stderr.String())
	}
}

// storeState is what the upgrade must keep, as the admin API shows it.
type storeState struct {
	users   map[string]map[string]any   // username → user
	runs    map[string][]map[string]any // directory id → its runs
	changes map[string][]any            // run id → its changes
}

func readState(t *testing.T, g *gate, dirIDs ...string) storeState {
	t.Helper()
	s := storeState{users: users(g.must(200, "GET", "/auth/v4/user", "admin", nil)),
		runs: map[string][]map[string]any{}, changes: map[string][]any{}}
	for _, d := range dirIDs {
		for _, r := range g.must(200, "GET", "/auth/v4/ldap/"+d+"/runs", "admin", nil)["list"].([]any) {
			run := r.(map[string]any)
			s.runs[d] = append(s.runs[d], run)
			s.changes[id(run["id"])] = g.must(200, "GET", "/auth/v4/ldap/"+d+"/runs/"+id(run["id"]), "admin", nil)["list"].([]any)
		}
	}
	return s
}

// sameFields reports the first of keys whose value differs between was and
// is (JSON-compared: a later binary may add keys, never change these).
func sameFields(was, is map[string]any, keys ...string) string {
	for _, k := range keys {
		a, _ := json.Marshal(was[k])
		b, _ := json.Marshal(is[k])
		if string(a) != string(b) {
			return fmt.Sprintf("%s: was %s, is %s", k, a, b)
		}
	}
	return ""
}

// releaseStore is a store the first release wrote as `serve` against
// slapd, stopped, with what the test expects an upgrade to keep.
type releaseStore struct {
	c        opsConfig
	path     string // the config file (badger, data_dir c.DataDir)
	fx       *ldaptest.Fixture
	corpID   string // the config file's directory
	apiID    string // the API-created directory
	apiLogin func(name string) string
	tokens   map[string]string // username → session token
	before   storeState
}

// writeReleaseStore runs the first release as `serve` against slapd:
// synced directory users, blocked three ways, an admin-created local user,
// an API-created directory with its bind password, sessions, runs.
func writeReleaseStore(t *testing.T) *releaseStore {
	t.Helper()
	release := releaseBinary(t)
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)    // the config file's directory
	fxAPI := srv.NewFixture(t) // the API-created directory
	svcDN, bindPassword := serviceAccount(t, srv)
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "directories:\n"+dirYAML("corp", fx, ""))
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())

	p := startBinary(t, release, path, c.Listen)
	g := &gate{t: t, base: p.base}
	corpID := directoryID(t, g, "corp")
	g.must(200, "POST", "/auth/v4/ldap/"+corpID+"/sync", "admin", nil)
	fx.DeleteUser(t, "dave")
	g.must(200, "POST", "/auth/v4/ldap/"+corpID+"/sync", "admin", nil)
	bobID := id(users(g.must(200, "GET", "/auth/v4/user", "admin", nil))[fx.Login("bob")]["id"])
	g.must(200, "POST", "/auth/v4/user/"+bobID+"/block", "admin", nil)
	g.must(200, "POST", "/auth/v4/user", "admin", map[string]string{
		"username": "ops@local", "password": "Local-Pass-1", "role": "advanced_user", "email": "ops@example.net"})
	body := directoryBody(fxAPI, "apidir", "username_at_domain", bindPassword)
	body["bind_dn"] = svcDN
	body["domain"] = "api.example.com" // logins name their directory by domain
	apiLogin := func(name string) string { return fxAPI.Users[name] + "@api.example.com" }
	apiID := id(g.must(200, "POST", "/auth/v4/ldap", "admin", body)["id"])
	g.must(200, "POST", "/auth/v4/ldap/"+apiID+"/sync", "admin", nil)
	tokens := map[string]string{}
	for _, name := range []string{fx.Login("alice"), fx.Login("frank"), apiLogin("bob")} {
		tokens[name] = g.login(name, ldaptest.Password)
	}
	tokens["ops@local"] = g.login("ops@local", "Local-Pass-1")
	before := readState(t, g, corpID, apiID)
	// The store holds what the test means it to.
	for name, want := range map[string][2]string{
		fx.Login("bob"): {"blocked", "admin"}, fx.Login("dave"): {"blocked", "deleted_in_ldap"},
		fx.Login("carol"): {"blocked_in_ldap", ""}, apiLogin("alice"): {"active", ""}, "ops@local": {"active", ""},
	} {
		u := before.users[name]
		if reason, _ := u["block_reason"].(string); u == nil || u["state"] != want[0] || reason != want[1] {
			t.Fatalf("release's store: %s = %v, want state %s reason %q", name, u, want[0], want[1])
		}
	}
	if len(before.runs[corpID]) != 2 || len(before.runs[apiID]) != 1 {
		t.Fatalf("release's runs: %v", before.runs)
	}
	stopBinary(t, p)
	return &releaseStore{c: c, path: path, fx: fx, corpID: corpID, apiID: apiID, apiLogin: apiLogin, tokens: tokens, before: before}
}

// checkKept compares what the current binary g shows with what the
// release wrote: users, runs and their changes, field by field; the local
// user's password hash and the API directory's bind password still work.
// micro: the store may keep times to the microsecond only (PostgreSQL's
// timestamptz), so both sides are compared at that precision.
func (rs *releaseStore) checkKept(t *testing.T, g *gate, micro bool) {
	t.Helper()
	before := rs.before
	after := readState(t, g, rs.corpID, rs.apiID)
	same := sameFields
	if micro {
		same = func(was, is map[string]any, keys ...string) string {
			return sameFields(microTimes(was).(map[string]any), microTimes(is).(map[string]any), keys...)
		}
	}
	if len(after.users) != len(before.users) {
		t.Errorf("%d users after the upgrade, %d before", len(after.users), len(before.users))
	}
	for name, was := range before.users {
		is := after.users[name]
		if is == nil {
			t.Errorf("user %s lost in the upgrade", name)
			continue
		}
		if d := same(was, is, "id", "state", "block_reason", "role", "source", "directory_id",
			"email", "display_name", "groups", "ldap_dn", "ldap_uuid", "created_at"); d != "" {
			t.Errorf("user %s changed in the upgrade: %s", name, d)
		}
	}
	for dir, runs := range before.runs {
		if len(after.runs[dir]) != len(runs) {
			t.Errorf("directory %s: %d runs after the upgrade, %d before", dir, len(after.runs[dir]), len(runs))
			continue
		}
		for i, was := range runs {
			if d := same(was, after.runs[dir][i], "id", "result", "trigger", "counts", "started_at", "directory_users"); d != "" {
				t.Errorf("run %v changed: %s", was["id"], d)
			}
			runID := id(was["id"])
			wasC, isC := before.changes[runID], after.changes[runID]
			if len(wasC) == 0 || len(isC) != len(wasC) {
				t.Errorf("run %s: %d changes after, %d before", runID, len(isC), len(wasC))
				continue
			}
			for j := range wasC {
				if d := same(wasC[j].(map[string]any), isC[j].(map[string]any), "seq", "action", "user_id", "username", "reason", "fields"); d != "" {
					t.Errorf("run %s change %d: %s", runID, j, d)
				}
			}
		}
	}
	// The local user's password hash, the API directory's bind password.
	g.login("ops@local", "Local-Pass-1")
	if run := g.must(200, "POST", "/auth/v4/ldap/"+rs.apiID+"/sync", "admin", nil); run["result"] != "success" {
		t.Fatalf("the API directory's sync after the upgrade: %v", run)
	}
	g.login(rs.apiLogin("alice"), ldaptest.Password)
	g.must(403, "POST", "/auth/v4/public/token", "", map[string]string{"username": rs.fx.Login("bob"), "password": ldaptest.Password})
}

// microTimes returns v with every RFC 3339 time in it cut to the
// microsecond, as PostgreSQL's timestamptz keeps it.
func microTimes(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = microTimes(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = microTimes(e)
		}
		return l
	case string:
		if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return ts.Truncate(time.Microsecond).Format(time.RFC3339Nano)
		}
	}
	return v
}

// TestUpgradeFromFirstRelease (SPEC §12, issue 15): the first release
// writes a store as `serve` against slapd (synced directory users, blocked
// three ways, an admin-created local user, an API-created directory with
// its bind password, sessions, runs); the current binary, started on the
// same data_dir, migrates it once and keeps all of it working. A store
// stamped with a layout above the current one is refused at start.
func TestUpgradeFromFirstRelease(t *testing.T) {
	rs := writeReleaseStore(t)
	current := opsBinary(t)
	c, path := rs.c, rs.path

	// The current binary on the same data_dir.
	p := startBinary(t, current, path, c.Listen)
	line := waitLog(t, p.stderr, 10*time.Second, `"msg":"store layout migrated"`, `"from":1,"to":2`)
	t.Logf("migration: %s", line)
	g := &gate{t: t, base: p.base}
	// Sessions the release handed out still hold, for the same user.
	for name, token := range rs.tokens {
		if u := g.must(200, "GET", "/auth/v4/whoami", token, nil); id(u["id"]) != id(rs.before.users[name]["id"]) {
			t.Errorf("%s's old session is now user %v", name, u["id"])
		}
	}
	rs.checkKept(t, g, false)
	stopBinary(t, p)

	// Once: the next start migrates nothing.
	p = startBinary(t, current, path, c.Listen)
	g = &gate{t: t, base: p.base}
	g.must(200, "GET", "/auth/v4/whoami", rs.tokens[rs.fx.Login("alice")], nil)
	stopBinary(t, p)
	if strings.Contains(p.stderr.String(), "store layout migrated") {
		t.Fatalf("the second start migrated again:\n%s", p.stderr.String())
	}

	// A store from a newer ldapgate: refused at start, exit status 1.
	const newer = 999
	setLayout(t, c.DataDir, newer)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, current, "serve", "-config", path).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("current binary on a layout %d store: %v (want exit status 1)\n%s", newer, err, out)
	}
	for _, want := range []string{fmt.Sprintf("written by a newer ldapgate (layout %d)", newer), "this binary knows up to layout"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("refusal lacks %q:\n%s", want, out)
		}
	}
}

// TestUpgradeFromFirstReleaseToPostgres (SPEC §12, issue 15): what an
// operator moving from the first release to PostgreSQL does: stop the
// release, run the current binary's migrate-store on its data_dir (the old
// layout, never opened by the current `serve`), start the current binary
// with store.backend: postgres. Everything is kept as in the badger
// upgrade but the sessions, which migrate-store drops and counts (README
// "Several replicas"): their users log in again.
func TestUpgradeFromFirstReleaseToPostgres(t *testing.T) {
	dsn := pgtest.DSN(t) // before the release's build: skips early without PostgreSQL
	rs := writeReleaseStore(t)
	current := opsBinary(t)

	dsnFile := filepath.Join(t.TempDir(), "pg_dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	pc := rs.c // same addresses, admin token and data_dir
	pc.Extra = fmt.Sprintf("store:\n  backend: postgres\n  postgres: {dsn_file: %q}\n", dsnFile) + rs.c.Extra
	pgPath := filepath.Join(t.TempDir(), "pg.yaml")
	writeConfig(t, pgPath, pc.yaml())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, current, "migrate-store", "-config", pgPath, "-from", "badger:"+rs.c.DataDir, "-to", "postgres").CombinedOutput()
	if err != nil {
		t.Fatalf("migrate-store on the release's store: %v\n%s", err, out)
	}
	t.Logf("migrate-store: %s", out)
	runs := 0
	for _, r := range rs.before.runs {
		runs += len(r)
	}
	for _, want := range []string{
		fmt.Sprintf("copied %d users, 1 API directories, %d runs", len(rs.before.users), runs),
		fmt.Sprintf("%d sessions were not copied: their users log in again", len(rs.tokens)),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("migrate-store's report lacks %q:\n%s", want, out)
		}
	}

	p := startBinary(t, current, pgPath, pc.Listen)
	g := &gate{t: t, base: p.base}
	// The sessions were dropped, as migrate-store said.
	for _, token := range rs.tokens {
		g.must(401, "GET", "/auth/v4/whoami", token, nil)
	}
	rs.checkKept(t, g, true)
	stopBinary(t, p)
}

// setLayout writes the store's layout version as a newer ldapgate would.
func setLayout(t *testing.T, dataDir string, v int) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dataDir).WithLogger(nil).WithValueLogFileSize(64 << 20))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("meta/layout"), []byte(fmt.Sprint(v))) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}
