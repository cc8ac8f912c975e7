package syncer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/internal/pgtest"
	"github.com/ldapgate/ldapgate/metrics"
)

const testDirID = 7

// env is a syncer over a real slapd fixture and a fresh store.
type env struct {
	t     *testing.T
	ctx   context.Context
	srv   *ldaptest.Server
	fx    *ldaptest.Fixture
	dir   config.Directory
	dirs  *directory.Set
	store cache.Backend
	m     *metrics.Metrics
	s     *Syncer
}

type envOpt func(*config.Directory)

func newEnv(t *testing.T, opts ...envOpt) *env {
	t.Helper()
	srv := ldaptest.StartSlapd(t)
	fx := srv.NewFixture(t)
	dir := fx.Dir
	dir.ID = testDirID
	for _, o := range opts {
		o(&dir)
	}
	dir.ApplyDefaults()
	e := &env{t: t, ctx: context.Background(), srv: srv, fx: fx, dir: dir, m: metrics.New()}
	e.setClient(nil)
	e.store = openTestStore(t)
	e.s = New(e.store, e.dirs, config.DefaultRoles(), testLogger(t), e.m)
	return e
}

// openTestStore opens the store the env's syncer writes: badger, or with
// LDAPGATE_TEST_STORE=postgres a database of the test cluster, so the
// sync rules run on both backends (SPEC §12: the same rules and answers).
func openTestStore(t *testing.T) cache.Backend {
	t.Helper()
	if os.Getenv("LDAPGATE_TEST_STORE") == "postgres" {
		s, err := pgstore.Open(context.Background(), pgtest.DSN(t), pgstore.Options{Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	store, err := badgerstore.Open(t.TempDir(), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store.Backend()
}

// setClient installs the directory in the set, its client optionally
// wrapped (to stop slapd at a chosen moment of a read).
func (e *env) setClient(wrap func(directory.Client) directory.Client) {
	e.t.Helper()
	c, err := directory.Open(e.dir, testLogger(e.t), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	var client directory.Client = c
	if wrap != nil {
		client = wrap(c)
	}
	if e.dirs == nil {
		e.dirs = directory.NewSet()
	}
	e.dirs.Replace([]*directory.Entry{{Config: e.dir, Client: client}})
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (e *env) sync(t testing.TB, opt Options) cache.Run {
	t.Helper()
	run, err := e.s.Sync(e.ctx, testDirID, opt)
	if err != nil {
		t.Fatalf("sync: %v (run %+v)", err, run)
	}
	return run
}

// user returns the store user of a logical fixture name.
func (e *env) user(t testing.TB, name string) account.User {
	t.Helper()
	u, err := e.store.UserByName(e.ctx, e.fx.Login(name))
	if err != nil {
		t.Fatalf("user %s: %v", name, err)
	}
	return u
}

func (e *env) expect(t testing.TB, name string, role string, st account.State, reason account.BlockReason) {
	t.Helper()
	u := e.user(t, name)
	if u.Role != role || u.State != st || u.BlockReason != reason {
		t.Errorf("%s: role=%s state=%s reason=%q, want role=%s state=%s reason=%q",
			name, u.Role, u.State, u.BlockReason, role, st, reason)
	}
}

// state is the comparable content of the whole store.
type userState struct {
	ID                    uint64
	Role, Email           string
	State                 account.State
	Reason                account.BlockReason
	Source                account.Source
	Hash                  bool
	Groups, DN, UUID      string
	UpdatedAt, LastSynced time.Time
}

func storeState(t testing.TB, s cache.Backend) map[string]userState {
	t.Helper()
	out := map[string]userState{}
	err := s.ForEachUser(context.Background(), func(u account.User) error {
		out[u.Username] = userState{u.ID, u.Role, u.Email, u.State, u.BlockReason, u.Source, u.PasswordHash != "",
			fmt.Sprint(u.Groups), u.LDAPDN, u.LDAPUUID, u.UpdatedAt, u.LastSyncedAt}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writes(run cache.Run) int {
	n := 0
	for a, c := range run.Counts {
		if Action(a).Writes() {
			n += c
		}
	}
	return n
}

// TestSyncRules walks one directory through the changes of issue 3's "Done
// when", syncing after each and checking the store.
func TestSyncRules(t *testing.T) {
	// One change per sync in a 5-user directory is 20-25% of its active
	// users: above the default max_block_fraction (0.2), which
	// TestSyncRefusal covers.
	e := newEnv(t, func(d *config.Directory) { f := 0.5; d.MaxBlockFraction = &f })
	ctx := e.ctx

	// A local user who will meet a directory user of the same name (rule 4).
	local, err := e.store.CreateUser(ctx, account.User{Username: e.fx.Prefix + "gina@example.com", Role: "user",
		State: account.StateActive, Source: account.SourceLocal, PasswordHash: "$argon2id$v=19$m=65536,t=1,p=1$c2FsdA$aGFzaA"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("first sync creates users with roles", func(t *testing.T) {
		run := e.sync(t, Options{Trigger: TriggerAPI})
		if run.Result != cache.RunSuccess || run.DirectoryUsers != 7 {
			t.Fatalf("run %+v", run)
		}
		if run.Counts["create"] != 6 || run.Counts["skip"] != 1 {
			t.Errorf("counts %v", run.Counts)
		}
		e.expect(t, "alice", "admin", account.StateActive, "")
		e.expect(t, "frank", "admin", account.StateActive, "") // admins and staff: highest
		e.expect(t, "bob", "user", account.StateActive, "")
		e.expect(t, "dave", "user", account.StateActive, "") // devs ⊂ staff
		e.expect(t, "star", "user", account.StateActive, "")
		e.expect(t, "carol", "user", account.StateBlockedInLDAP, "") // disabled in the directory
		if _, err := e.store.UserByName(ctx, e.fx.Login("erin")); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("erin (no mapped group) must be skipped: %v", err)
		}
		if g := e.user(t, "frank").Groups; !slices.Equal(g, []string{"admins", "staff"}) {
			t.Errorf("frank's groups %v", g)
		}
		audit, err := e.store.RunChanges(ctx, run.ID)
		if err != nil || len(audit) != 6 {
			t.Errorf("audit of the first run: %d entries, %v", len(audit), err)
		}
		if v := metricValue(e.m.Users.WithLabelValues(e.dir.Name, "active")); v != 5 {
			t.Errorf("users{state=active} = %v", v)
		}
		if v := metricValue(e.m.SyncChanges.WithLabelValues(e.dir.Name, "create")); v != 6 {
			t.Errorf("sync_changes_total{action=create} = %v", v)
		}
	})

	t.Run("unchanged directory writes nothing but the run", func(t *testing.T) {
		before := storeState(t, e.store)
		run := e.sync(t, Options{})
		if writes(run) != 0 || run.Counts["unchanged"] != 6 {
			t.Errorf("counts %v", run.Counts)
		}
		if audit, _ := e.store.RunChanges(ctx, run.ID); len(audit) != 0 {
			t.Errorf("audit %v", audit)
		}
		if after := storeState(t, e.store); !maps.Equal(before, after) {
			t.Errorf("store changed:\n%v\n%v", before, after)
		}
	})

	t.Run("deleted in LDAP becomes blocked", func(t *testing.T) {
		e.fx.DeleteUser(t, "bob")
		e.sync(t, Options{})
		e.expect(t, "bob", "user", account.StateBlocked, account.ReasonDeletedInLDAP)
	})

	t.Run("locked becomes blocked_in_ldap, unlocked active", func(t *testing.T) {
		e.fx.SetDisabled(t, "dave", true)
		e.fx.SetDisabled(t, "carol", false)
		e.sync(t, Options{})
		e.expect(t, "dave", "user", account.StateBlockedInLDAP, "")
		e.expect(t, "carol", "user", account.StateActive, "")
	})

	t.Run("a group change moves the role; leaving every group puts out of scope", func(t *testing.T) {
		e.fx.AddMember(t, "admins", "star")
		e.sync(t, Options{})
		e.expect(t, "star", "admin", account.StateActive, "")
		e.fx.RemoveMember(t, "admins", "star")
		e.fx.RemoveMember(t, "staff", "star")
		e.sync(t, Options{})
		e.expect(t, "star", "admin", account.StateBlocked, account.ReasonOutOfScope)
		e.fx.AddMember(t, "staff", "star")
		e.sync(t, Options{})
		e.expect(t, "star", "user", account.StateActive, "")
	})

	t.Run("an admin block survives syncs", func(t *testing.T) {
		alice := e.user(t, "alice")
		if _, err := e.store.UpdateUser(ctx, alice.ID, func(u *account.User) error {
			u.State, u.BlockReason = account.StateBlocked, account.ReasonAdmin
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		e.fx.AddMember(t, "staff", "alice")
		e.sync(t, Options{})
		e.expect(t, "alice", "admin", account.StateBlocked, account.ReasonAdmin)
		if g := e.user(t, "alice").Groups; !slices.Equal(g, []string{"admins", "staff"}) {
			t.Errorf("fields of an admin-blocked user still follow the directory: groups %v", g)
		}
	})

	t.Run("a local user with the same name is converted", func(t *testing.T) {
		e.fx.AddUser(t, "gina", "staff")
		run := e.sync(t, Options{})
		if run.Counts["convert_local"] != 1 {
			t.Errorf("counts %v", run.Counts)
		}
		g := e.user(t, "gina")
		if g.ID != local.ID || g.Source != account.SourceLDAP || g.PasswordHash != "" || g.DirectoryID != testDirID {
			t.Errorf("converted: %+v", g)
		}
		// From now on the directory's password is the one that works.
		if _, err := e.dirs.List()[0].Client.Authenticate(ctx, e.fx.Users["gina"], ldaptest.Password); err != nil {
			t.Errorf("LDAP bind of the converted user: %v", err)
		}
	})

	t.Run("a user deleted by an admin comes back", func(t *testing.T) {
		old := e.user(t, "frank")
		if err := e.store.DeleteUser(ctx, old.ID); err != nil {
			t.Fatal(err)
		}
		e.sync(t, Options{})
		e.expect(t, "frank", "admin", account.StateActive, "")
		if e.user(t, "frank").ID == old.ID {
			t.Error("ids are never reused")
		}
	})

	t.Run("users of another directory are never touched", func(t *testing.T) {
		other, err := e.store.CreateUser(ctx, account.User{Username: e.fx.Prefix + "henry@example.com", Role: "admin",
			State: account.StateActive, Source: account.SourceLDAP, DirectoryID: 99, LDAPUUID: "x"})
		if err != nil {
			t.Fatal(err)
		}
		e.fx.AddUser(t, "henry", "staff")
		run := e.sync(t, Options{})
		got, _ := e.store.UserByID(ctx, other.ID)
		if got.DirectoryID != 99 || got.Role != "admin" || !got.Active() || run.Counts["skip"] != 2 {
			t.Errorf("other directory's user %+v, counts %v", got, run.Counts)
		}
	})

	t.Run("dry run and preview show the plan without writing", func(t *testing.T) {
		e.fx.DeleteUser(t, "gina")
		before := storeState(t, e.store)
		run := e.sync(t, Options{DryRun: true})
		if run.Result != cache.RunDryRun || run.Counts["block"] != 1 {
			t.Errorf("dry run %+v", run)
		}
		rows, err := e.s.Preview(ctx, testDirID)
		if err != nil {
			t.Fatal(err)
		}
		var blocks []string
		for _, r := range rows {
			if r.Action == "block" {
				blocks = append(blocks, r.Username+"/"+r.Reason)
			}
		}
		if !slices.Equal(blocks, []string{e.fx.Login("gina") + "/deleted_in_ldap"}) {
			t.Errorf("preview blocks %v", blocks)
		}
		if after := storeState(t, e.store); !maps.Equal(before, after) {
			t.Error("dry run or preview wrote the store")
		}
		// The dry run's changes are its run's list, marked planned, and
		// are what the real run then applies.
		planned, err := e.store.RunChanges(ctx, run.ID)
		if err != nil {
			t.Fatal(err)
		}
		gina := e.user(t, "gina")
		if len(planned) != 1 || planned[0].Action != "block" || planned[0].UserID != gina.ID ||
			planned[0].Username != e.fx.Login("gina") || planned[0].Reason != "deleted_in_ldap" || !planned[0].Planned {
			t.Errorf("dry run's changes %+v, want gina's planned block", planned)
		}
		real := e.sync(t, Options{})
		applied, err := e.store.RunChanges(ctx, real.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != 1 || applied[0].Planned || applied[0].Action != planned[0].Action ||
			applied[0].UserID != planned[0].UserID || !maps.Equal(applied[0].Fields, planned[0].Fields) {
			t.Errorf("real run's changes %+v differ from the dry run's %+v", applied, planned)
		}
	})

	t.Run("runs are recorded with their metrics", func(t *testing.T) {
		runs, err := e.store.Runs(ctx, testDirID, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			if r.Result == cache.RunRunning {
				t.Errorf("run %d left running", r.ID)
			}
		}
		if v := metricValue(e.m.SyncRuns.WithLabelValues(e.dir.Name, "success")); int(v) != len(runs)-1 {
			t.Errorf("sync_runs_total{success} = %v, runs %d", v, len(runs))
		}
		if v := metricValue(e.m.SyncLastSuccess.WithLabelValues(e.dir.Name)); v < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Errorf("last success %v", v)
		}
	})
}

// failingClient stops the real slapd at a chosen point of a read.
type failingClient struct {
	directory.Client
	stop       func()
	afterUsers int // stop after this many users were delivered (-1: not during users)
	beforeGrp  bool
}

func (c *failingClient) ReadUsers(ctx context.Context, fn func(directory.User) error) error {
	n := 0
	return c.Client.ReadUsers(ctx, func(u directory.User) error {
		n++
		if n == c.afterUsers {
			c.stop()
		}
		return fn(u)
	})
}

func (c *failingClient) ReadGroups(ctx context.Context, fn func(directory.Group) error) error {
	if c.beforeGrp {
		c.stop()
	}
	return c.Client.ReadGroups(ctx, fn)
}

// TestSyncDirectoryFailures: slapd stopped before, during the users read, or
// between the users and the groups read → failed run, zero changes.
func TestSyncDirectoryFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		afterUsers int
		beforeGrp  bool
		stopFirst  bool
	}{
		{"stopped before the read", -1, false, true},
		{"stopped during the users read", 1, false, false},
		{"stopped before the groups read", -1, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.sync(t, Options{})
			e.fx.DeleteUser(t, "bob") // a change the failed run must not make
			before := storeState(t, e.store)
			e.setClient(func(c directory.Client) directory.Client {
				return &failingClient{Client: c, stop: e.srv.Stop, afterUsers: tc.afterUsers, beforeGrp: tc.beforeGrp}
			})
			if tc.stopFirst {
				e.srv.Stop()
			}
			run, err := e.s.Sync(e.ctx, testDirID, Options{Force: true})
			if !errors.Is(err, directory.ErrUnavailable) && !errors.Is(err, directory.ErrIncompleteRead) {
				t.Errorf("error %v, want a directory read error", err)
			}
			if run.Result != cache.RunFailed || run.Error == "" || writes(run) != 0 {
				t.Errorf("run %+v", run)
			}
			if after := storeState(t, e.store); !maps.Equal(before, after) {
				t.Errorf("a failed read changed the store")
			}
			if audit, _ := e.store.RunChanges(e.ctx, run.ID); len(audit) != 0 {
				t.Errorf("audit of a failed run: %v", audit)
			}
			if v := metricValue(e.m.SyncRuns.WithLabelValues(e.dir.Name, "failed")); v != 1 {
				t.Errorf("sync_runs_total{failed} = %v", v)
			}
		})
	}
}

// TestSyncRefusal: 60% of users deleted → refused (recorded, counted, no
// change); with force → applied. An empty read likewise.
func TestSyncRefusal(t *testing.T) {
	e := newEnv(t)
	e.sync(t, Options{})
	// 5 active users (alice bob dave frank star); 3 deleted = 60%.
	for _, n := range []string{"bob", "dave", "star"} {
		e.fx.DeleteUser(t, n)
	}
	before := storeState(t, e.store)
	run, err := e.s.Sync(e.ctx, testDirID, Options{})
	if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrTooManyBlocks) {
		t.Fatalf("error %v", err)
	}
	if run.Result != cache.RunRefused || run.Error == "" || run.Counts["block"] != 3 {
		t.Errorf("run %+v", run)
	}
	if after := storeState(t, e.store); !maps.Equal(before, after) {
		t.Error("a refused run changed the store")
	}
	if v := metricValue(e.m.SyncRuns.WithLabelValues(e.dir.Name, "refused")); v != 1 {
		t.Errorf("sync_runs_total{refused} = %v", v)
	}
	run = e.sync(t, Options{Force: true})
	if run.Result != cache.RunSuccess || !run.Forced || run.Counts["block"] != 3 {
		t.Errorf("forced run %+v", run)
	}
	for _, n := range []string{"bob", "dave", "star"} {
		e.expect(t, n, "user", account.StateBlocked, account.ReasonDeletedInLDAP)
	}

	// A users_dn that matches nothing: an empty read is refused too.
	e.dir.UsersDN = "ou=groups,ou=" + e.fx.Prefix
	e.setClient(nil)
	before = storeState(t, e.store)
	if _, err := e.s.Sync(e.ctx, testDirID, Options{}); !errors.Is(err, ErrEmptyRead) {
		t.Errorf("empty read: %v", err)
	}
	if after := storeState(t, e.store); !maps.Equal(before, after) {
		t.Error("an empty read changed the store")
	}
}

// gate blocks the first ReadUsers until released, to hold a sync open.
type gate struct {
	directory.Client
	used    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (g *gate) ReadUsers(ctx context.Context, fn func(directory.User) error) error {
	if g.used.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.release
	}
	return g.Client.ReadUsers(ctx, fn)
}

// TestSyncJoins: a sync requested while one runs joins it; a dry run does
// not.
func TestSyncJoins(t *testing.T) {
	e := newEnv(t)
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	e.setClient(func(c directory.Client) directory.Client { g.Client = c; return g })

	joined := make(chan struct{}, 1)
	testHookJoin = func(uint64) { joined <- struct{}{} }
	t.Cleanup(func() { testHookJoin = nil })
	var wg sync.WaitGroup
	runs := make([]cache.Run, 2)
	wg.Add(1)
	go func() { defer wg.Done(); runs[0], _ = e.s.Sync(e.ctx, testDirID, Options{Trigger: "first"}) }()
	<-g.entered
	wg.Add(1)
	go func() { defer wg.Done(); runs[1], _ = e.s.Sync(e.ctx, testDirID, Options{Trigger: "second"}) }()
	// The dry run passes the gate (already used) and finishes on its own.
	dry, err := e.s.Sync(e.ctx, testDirID, Options{DryRun: true})
	if err != nil || dry.Result != cache.RunDryRun {
		t.Errorf("dry run during a sync: %+v %v", dry, err)
	}
	select { // the second request waits for the first: it has joined
	case <-joined:
	case <-time.After(30 * time.Second):
		t.Fatal("the second request never joined the running sync")
	}
	close(g.release)
	wg.Wait()
	if runs[0].ID == 0 || runs[0].ID != runs[1].ID || runs[1].Trigger != "first" {
		t.Errorf("second request did not join: %+v / %+v", runs[0], runs[1])
	}
	all, _ := e.store.Runs(e.ctx, testDirID, 0)
	if len(all) != 2 {
		t.Errorf("%d runs recorded, want 2 (the sync and the dry run)", len(all))
	}
}

// TestMigrate: a legacy (naming: email) directory is renamed to
// username@domain in one go, and cancelled with no change when a new name
// is taken.
func TestMigrate(t *testing.T) {
	e := newEnv(t, func(d *config.Directory) {
		d.Naming = config.NamingEmail
		d.Domain = "corp.example.org" // so the new names differ from the mails
	})
	ctx := e.ctx
	e.sync(t, Options{})
	if _, err := e.store.UserByName(ctx, e.fx.Users["bob"]+"@example.com"); err != nil {
		t.Fatalf("legacy name: %v", err)
	}
	newName := func(n string) string { return account.NormalizeName(e.fx.Users[n]) + "@corp.example.org" }

	taken, err := e.store.CreateUser(ctx, account.User{Username: newName("bob"), Role: "user",
		State: account.StateActive, Source: account.SourceLocal})
	if err != nil {
		t.Fatal(err)
	}
	before := storeState(t, e.store)
	_, err = e.s.Migrate(ctx, testDirID)
	var ce *ConflictError
	if !errors.As(err, &ce) || !slices.Equal(ce.Names, []string{newName("bob")}) {
		t.Fatalf("conflict: %v", err)
	}
	if after := storeState(t, e.store); !maps.Equal(before, after) {
		t.Error("a cancelled migration changed users")
	}
	if n, _ := e.store.NamingOverride(ctx, testDirID); n != "" {
		t.Errorf("naming override set by a cancelled migration: %q", n)
	}

	if err := e.store.DeleteUser(ctx, taken.ID); err != nil {
		t.Fatal(err)
	}
	res, err := e.s.Migrate(ctx, testDirID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Renamed != 6 {
		t.Errorf("result %+v", res)
	}
	for _, n := range []string{"alice", "bob", "carol", "dave", "frank", "star"} {
		u, err := e.store.UserByName(ctx, newName(n))
		old := before[account.NormalizeName(e.fx.Users[n]+"@example.com")]
		if err != nil || u.ID != old.ID || u.LDAPUUID != old.UUID || u.Role != old.Role {
			t.Errorf("%s after migration: %+v %v (before %+v)", n, u, err, old)
		}
	}
	if n, _ := e.store.NamingOverride(ctx, testDirID); n != config.NamingUsernameAtDomain {
		t.Errorf("naming override %q", n)
	}
	audit, _ := e.store.RunChanges(ctx, res.RunID)
	if len(audit) != 6 {
		t.Errorf("migration audit: %d entries", len(audit))
	}
	// The next sync uses the new naming: nothing to change.
	if run := e.sync(t, Options{}); writes(run) != 0 {
		t.Errorf("sync after migration: %v", run.Counts)
	}
	if res, err := e.s.Migrate(ctx, testDirID); err != nil || !res.AlreadyMigrated {
		t.Errorf("second migration: %+v %v", res, err)
	}
}

// TestSyncOneAndRemove: the on-the-spot sync at login, and rule 9.
func TestSyncOneAndRemove(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	e.sync(t, Options{})
	client := e.dirs.List()[0].Client

	e.fx.AddUser(t, "henry", "admins")
	e.fx.AddUser(t, "ivan", "others")
	e.fx.DeleteUser(t, "bob") // one-user sync must not block bob
	h, err := client.FindUser(ctx, e.fx.Users["henry"])
	if err != nil {
		t.Fatal(err)
	}
	u, err := e.s.SyncOne(ctx, testDirID, h)
	if err != nil || u.Username != e.fx.Login("henry") || u.Role != "admin" || !u.Active() || u.ID == 0 {
		t.Fatalf("SyncOne henry: %+v %v", u, err)
	}
	again, err := e.s.SyncOne(ctx, testDirID, h)
	if err != nil || again.ID != u.ID {
		t.Errorf("SyncOne of a synced user: %+v %v", again, err)
	}
	iv, err := client.FindUser(ctx, e.fx.Users["ivan"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.SyncOne(ctx, testDirID, iv); !errors.Is(err, ErrSkipped) {
		t.Errorf("SyncOne ivan (no mapped group): %v", err)
	}
	e.expect(t, "bob", "user", account.StateActive, "")

	// Rule 9, with a session that must end.
	alice := e.user(t, "alice")
	tok := sha256.Sum256([]byte("token"))
	if err := e.store.PutSession(ctx, cache.Session{TokenHash: tok, UserID: alice.ID,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), LastSeen: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateUser(ctx, e.user(t, "frank").ID, func(u *account.User) error {
		u.State, u.BlockReason = account.StateBlocked, account.ReasonAdmin
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n, err := e.s.RemoveDirectory(ctx, testDirID)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob", "carol", "dave", "star", "henry"} {
		e.expect(t, name, e.user(t, name).Role, account.StateBlocked, account.ReasonDirectoryRemoved)
	}
	e.expect(t, "frank", "admin", account.StateBlocked, account.ReasonAdmin)
	if n != 6 { // all but frank, carol too (blocked_in_ldap is not a directory_removed block)
		t.Errorf("RemoveDirectory blocked %d, want 6", n)
	}
	if _, err := e.store.SessionByHash(ctx, tok); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("session of a blocked user: %v", err)
	}
}

// metricValue reads a counter or gauge (testutil would add a module).
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// afterRead runs a function once the users have been read, before the
// sync plans and applies: a store change made while the directory is read.
type afterRead struct {
	directory.Client
	fn func()
}

func (a *afterRead) ReadUsers(ctx context.Context, fn func(directory.User) error) error {
	err := a.Client.ReadUsers(ctx, fn)
	if err == nil && a.fn != nil {
		a.fn()
		a.fn = nil
	}
	return err
}

// A name given to another directory's user while a first sync reads is not
// taken over: the sync writes new users without looking each name up when the
// store is as its plan saw it (cache/badgerstore/names.go), and must notice
// that it no longer is.
func TestSyncNameTakenDuringRead(t *testing.T) {
	e := newEnv(t)
	bob := e.fx.Login("bob")
	var other account.User
	e.setClient(func(c directory.Client) directory.Client {
		return &afterRead{Client: c, fn: func() {
			// Late enough that the plan's view of the store (loaded while
			// the directory is read) is, all but surely, older.
			time.Sleep(50 * time.Millisecond)
			var err error
			other, err = e.store.CreateUser(e.ctx, account.User{Username: bob, Role: "user", State: account.StateActive,
				Source: account.SourceLDAP, DirectoryID: testDirID + 1, LDAPUUID: "elsewhere"})
			if err != nil {
				t.Error(err)
			}
		}}
	})
	run := e.sync(t, Options{})
	if run.Counts[string(ActionCreate)] == 0 {
		t.Fatalf("nobody created: %v", run.Counts)
	}
	u, err := e.store.UserByName(e.ctx, bob)
	if err != nil || u.ID != other.ID || u.DirectoryID != testDirID+1 {
		t.Errorf("%s is %+v (%v), want the other directory's user %d", bob, u, err, other.ID)
	}
	mine, err := e.store.UsersOfDirectory(e.ctx, testDirID)
	if err != nil || len(mine) != run.Counts[string(ActionCreate)] {
		t.Errorf("%d users of the directory, %d created (%v)", len(mine), run.Counts[string(ActionCreate)], err)
	}
	for _, m := range mine {
		if m.Username == bob || strings.Contains(m.LDAPDN, "="+e.fx.Users["bob"]+",") {
			t.Errorf("bob's entry was written: %+v", m)
		}
	}
	// The next sync sees the name taken and skips the entry (rule 10).
	again := e.sync(t, Options{})
	if again.Counts[string(ActionSkip)] == 0 || writes(again) != 0 {
		t.Errorf("second sync: %v", again.Counts)
	}
}

// SetRoles (a config reload) changes which role wins for users in several
// mapped groups from the next sync on.
func TestSyncSetRoles(t *testing.T) {
	e := newEnv(t)
	e.sync(t, Options{})
	e.expect(t, "frank", "admin", account.StateActive, "") // admins and staff
	e.s.SetRoles([]string{"user", "advanced_user", "admin"})
	run := e.sync(t, Options{})
	e.expect(t, "frank", "user", account.StateActive, "")
	e.expect(t, "alice", "admin", account.StateActive, "") // admins only
	if run.Counts[string(ActionUpdate)] != 1 {
		t.Errorf("counts %v, want frank's update only", run.Counts)
	}
}

// checkIndexes fails t unless every user's name and (directory, uuid) lead
// back to that user and no two users share a name or a uuid: the invariant the
// trusted creates of cache/badgerstore/names.go must keep under any
// interleaving.
func checkIndexes(t *testing.T, ctx context.Context, store cache.Backend) {
	t.Helper()
	all, _, err := store.ListUsers(ctx, cache.UserFilter{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]uint64{}
	uuids := map[string]uint64{}
	for _, u := range all {
		if prev, dup := names[u.Username]; dup {
			t.Errorf("users %d and %d share the name %s", prev, u.ID, u.Username)
		}
		names[u.Username] = u.ID
		if got, err := store.UserByName(ctx, u.Username); err != nil || got.ID != u.ID {
			t.Errorf("name %s leads to %d (%v), not to its user %d", u.Username, got.ID, err, u.ID)
		}
		if u.Source != account.SourceLDAP || u.LDAPUUID == "" {
			continue
		}
		k := fmt.Sprint(u.DirectoryID, "/", u.LDAPUUID)
		if prev, dup := uuids[k]; dup {
			t.Errorf("users %d and %d share the uuid %s", prev, u.ID, k)
		}
		uuids[k] = u.ID
		if got, err := store.UserByUUID(ctx, u.DirectoryID, u.LDAPUUID); err != nil || got.ID != u.ID {
			t.Errorf("uuid %s leads to %d (%v), not to its user %d", k, got.ID, err, u.ID)
		}
	}
}

// A first sync (trusted creates, one user per batch so there are many
// commits to fall between) races writers that give the directory's names
// to other users: whoever wins each name, no name or uuid ends up shared
// or pointing at the wrong user, and the next sync settles the rest.
func TestSyncTrustedCreatesRaceOtherWriters(t *testing.T) {
	e := newEnv(t)
	var logins []string
	for _, l := range e.fx.Users {
		logins = append(logins, account.NormalizeName(l+"@example.com"))
	}
	for round := range 12 {
		store, err := badgerstore.Open(t.TempDir(), testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		s := New(store.Backend(), e.dirs, config.DefaultRoles(), testLogger(t), nil)
		s.batch = 1
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			// Every other round, local users (rule 4 converts the ones the
			// plan saw); else users of another directory (rule 10).
			for i, name := range logins {
				if i%2 != round%2 {
					continue
				}
				select {
				case <-done:
					return
				case <-time.After(time.Duration(round%4) * time.Millisecond):
				}
				u := account.User{Username: name, Role: "user", State: account.StateActive, Source: account.SourceLocal}
				if round%3 == 0 {
					u.Source, u.DirectoryID, u.LDAPUUID = account.SourceLDAP, testDirID+1, "other-"+name
				}
				if _, err := store.CreateUser(e.ctx, u); err != nil && !errors.Is(err, cache.ErrNameTaken) {
					t.Error(err)
				}
			}
		})
		if _, err := s.Sync(e.ctx, testDirID, Options{Force: true}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		close(done)
		wg.Wait()
		checkIndexes(t, e.ctx, store.Backend())
		if _, err := s.Sync(e.ctx, testDirID, Options{Force: true}); err != nil {
			t.Fatalf("round %d, second sync: %v", round, err)
		}
		checkIndexes(t, e.ctx, store.Backend())
		store.Close()
	}
}

// The same race at a larger scale, timed so it hits the trusted creates:
// the writer starts once the sync's first batch has committed (its plan
// trusted the store as read), then takes every 23rd of the directory's
// names it can. Each name it wins is one change the sync must drop, and
// no name or uuid may end up shared.
func TestSyncTrustedCreatesRaceBulk(t *testing.T) {
	srv := ldaptest.StartSlapdWith(t, ldaptest.SlapdOptions{BulkUsers: 1500, BulkGroups: 10})
	dir := ldaptest.BulkDirectory(srv)
	dir.ID = 1
	dir.ApplyDefaults()
	client, err := directory.Open(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	set := directory.NewSet()
	set.Replace([]*directory.Entry{{Config: dir, Client: client}})
	ctx := context.Background()
	var names []string
	if err := client.ReadUsers(ctx, func(u directory.User) error {
		n, _ := directory.CanonicalName(dir, u)
		names = append(names, n)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { testHookAfterBatch = nil }()
	won := 0
	for round, batch := range []int{3, 5, 8} {
		store, err := badgerstore.Open(t.TempDir(), testLogger(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		s := New(store.Backend(), set, config.DefaultRoles(), testLogger(t), nil)
		s.batch = batch
		started, done := make(chan struct{}), make(chan struct{})
		var once sync.Once
		testHookAfterBatch = func(int) { once.Do(func() { close(started) }) }
		taken := 0
		var wg sync.WaitGroup
		wg.Go(func() {
			select {
			case <-started:
			case <-done:
				return
			}
			for i := round; i < len(names); i += 23 {
				u := account.User{Username: names[i], Role: "user", State: account.StateActive, Source: account.SourceLocal}
				if round%2 == 0 {
					u.Source, u.DirectoryID, u.LDAPUUID = account.SourceLDAP, 2, fmt.Sprint("other-", i)
				}
				_, err := store.CreateUser(ctx, u)
				switch {
				case err == nil:
					taken++
				case !errors.Is(err, cache.ErrNameTaken):
					t.Error(err)
				}
			}
		})
		run, err := s.Sync(ctx, dir.ID, Options{})
		close(done)
		wg.Wait()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if run.Counts[string(ActionSkip)] != taken || run.Counts[string(ActionCreate)] != len(names)-taken {
			t.Errorf("round %d: the writer took %d names, the sync wrote %v", round, taken, run.Counts)
		}
		checkIndexes(t, ctx, store.Backend())
		if _, err := s.Sync(ctx, dir.ID, Options{}); err != nil {
			t.Fatalf("round %d, second sync: %v", round, err)
		}
		checkIndexes(t, ctx, store.Backend())
		won += taken
		store.Close()
	}
	if won == 0 {
		t.Error("the writer never won a name during the apply: the race was not run")
	}
}
