package auth

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/cache/badgerstore"
	"github.com/ldapgate/ldapgate/cache/pgstore"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/internal/pgtest"
	"github.com/ldapgate/ldapgate/metrics"
	"github.com/ldapgate/ldapgate/syncer"
)

// env is the real stack under Service: a slapd, a badger store in a temp
// dir, the directory clients, the syncer.
type env struct {
	srv   *ldaptest.Server
	fx    *ldaptest.Fixture
	cfg   *config.Config
	store cache.Backend
	dirs  *directory.Set
	sy    *syncer.Syncer
	m     *metrics.Metrics
	svc   *Service
	// calls counts Authenticate calls reaching the first directory.
	calls *atomic.Int64
}

var testLog = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// counting wraps a real directory client to count (and optionally slow)
// binds; every answer still comes from slapd.
type counting struct {
	directory.Client
	calls *atomic.Int64
	delay time.Duration
}

func (c counting) Authenticate(ctx context.Context, u, p string) (directory.User, error) {
	c.calls.Add(1)
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	return c.Client.Authenticate(ctx, u, p)
}

// newEnv starts slapd with one fixture (or reuses srv), opens the store and
// syncs the fixture's directory once. tweak may change the config first.
func newEnv(t testing.TB, srv *ldaptest.Server, tweak func(*config.Config)) *env {
	t.Helper()
	if srv == nil {
		srv = ldaptest.StartSlapd(t)
		if srv == nil {
			return nil
		}
	}
	e := &env{srv: srv, fx: srv.NewFixture(t), m: metrics.New(), calls: new(atomic.Int64)}
	e.cfg = &config.Config{}
	e.cfg.ApplyDefaults()
	if tweak != nil {
		tweak(e.cfg)
	}
	var err error
	e.store = openTestStore(t, e.m)
	e.dirs = directory.NewSet()
	e.addDir(t, e.fx.Dir, 0)
	e.sy = syncer.New(e.store, e.dirs, e.cfg.Roles, testLog, e.m)
	e.sync(t)
	e.svc, err = New(Deps{Config: e.cfg, Store: e.store, Dirs: e.dirs, Syncer: e.sy, Log: testLog, Metrics: e.m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.svc.Close)
	return e
}

// addDir registers a directory (the first one counted, optionally slowed).
func (e *env) addDir(t testing.TB, dc config.Directory, delay time.Duration) *directory.Entry {
	t.Helper()
	ctx := context.Background()
	id, err := e.store.DirectoryIDForName(ctx, dc.Name)
	if err != nil {
		t.Fatal(err)
	}
	dc.ID = id
	dc.ApplyDefaults()
	cl, err := directory.Open(dc, testLog, e.m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	var c directory.Client = cl
	if len(e.dirs.List()) == 0 {
		c = counting{Client: cl, calls: e.calls, delay: delay}
	}
	ent := &directory.Entry{Config: dc, Client: c}
	e.dirs.Replace(append(append([]*directory.Entry(nil), e.dirs.List()...), ent))
	return ent
}

func (e *env) sync(t testing.TB) {
	t.Helper()
	for _, d := range e.dirs.List() {
		if _, err := e.sy.Sync(context.Background(), d.Config.ID, syncer.Options{Trigger: "test", Force: true}); err != nil {
			t.Fatalf("sync %s: %v", d.Config.Name, err)
		}
	}
}

func (e *env) user(t testing.TB, logical string) account.User {
	t.Helper()
	u, err := e.store.UserByName(context.Background(), e.fx.Login(logical))
	if err != nil {
		t.Fatalf("store user %s: %v", logical, err)
	}
	return u
}

func (e *env) setState(t testing.TB, logical string, st account.State, r account.BlockReason) {
	t.Helper()
	u := e.user(t, logical)
	if _, err := e.store.UpdateUser(context.Background(), u.ID, func(x *account.User) error {
		x.State, x.BlockReason = st, r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

var ip1 = netip.MustParseAddr("192.0.2.1")

// openTestStore is badger, or with LDAPGATE_TEST_STORE=postgres a database
// of the test cluster: logins and sessions answer the same on both (SPEC
// §12).
func openTestStore(t testing.TB, m *metrics.Metrics) cache.Backend {
	t.Helper()
	if os.Getenv("LDAPGATE_TEST_STORE") == "postgres" {
		s, err := pgstore.Open(context.Background(), pgtest.DSN(t), pgstore.Options{Log: testLog})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s, err := badgerstore.Open(t.TempDir(), testLog, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s.Backend()
}
