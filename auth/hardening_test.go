package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// withRoot adds the local user root@local (password "s3cret") to e.
func withRoot(t *testing.T, e *env) account.User {
	t.Helper()
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if err := SyncLocalUsers(context.Background(), e.store, []config.LocalUser{
		{Username: "root@local", PasswordHash: config.Secret(h), Role: "admin"},
	}); err != nil {
		t.Fatal(err)
	}
	u, err := e.store.UserByName(context.Background(), "root@local")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Finding 3: wrong passwords for a name from one address used to refuse
// that name from every address. Now the attacker's own pair is refused;
// the owner, from an address with no failures of its own, logs in — a
// directory user, the break-glass local admin, and over Basic alike.
func TestNobodyLocksAnotherOut(t *testing.T) {
	e := newEnv(t, nil, nil) // the default limits
	if e == nil {
		return
	}
	withRoot(t, e)
	ctx := context.Background()
	attacker, owner := netip.MustParseAddr("192.0.2.66"), netip.MustParseAddr("192.0.2.77")
	for _, tc := range []struct {
		name, login, pw string
		basic           bool
	}{
		{"directory user", e.fx.Login("alice"), ldaptest.Password, false},
		{"local admin", "root@local", "s3cret", false},
		{"basic auth", e.fx.Login("bob"), ldaptest.Password, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			try := func(pw string, ip netip.Addr) error {
				if tc.basic {
					_, err := e.svc.Basic(ctx, tc.login, pw, ip)
					return err
				}
				_, err := e.svc.Login(ctx, LoginRequest{Name: tc.login, Password: pw, ClientIP: ip})
				return err
			}
			var rl *RateLimitedError
			for i := range config.DefaultMaxFailures + 5 {
				err := try(fmt.Sprintf("guess-%d", i), attacker)
				if i < config.DefaultMaxFailures && !errors.Is(err, ErrBadCredentials) {
					t.Fatalf("guess %d: %v", i, err)
				}
				if i >= config.DefaultMaxFailures && (!errors.As(err, &rl) || rl.PerAddress) {
					t.Fatalf("guess %d: %v, want the pair refused", i, err)
				}
			}
			if err := try(tc.pw, attacker); !errors.As(err, &rl) {
				t.Fatalf("right password from the attacker's address: %v, want 429", err)
			}
			if err := try(tc.pw, owner); err != nil {
				t.Fatalf("the owner, from another address: %v", err)
			}
		})
	}
}

// A name failing from many addresses is slowed down, never refused: the
// wait honours the request's context, and the right password still logs
// in from a clean address.
func TestNameUnderAttackIsSlowedNotRefused(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) {
		c.Login.MaxFailures = 2
		c.Login.MaxFailuresPerUser = 4
		c.Login.Window = config.Duration(time.Hour)
	})
	if e == nil {
		return
	}
	ctx := context.Background()
	alice := e.fx.Login("alice")
	for i := range 6 {
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		if _, err := e.svc.Login(ctx, LoginRequest{Name: alice, Password: "bad", ClientIP: ip}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	clean := netip.MustParseAddr("203.0.113.5")
	if d, err := e.svc.limits.check(e.user(t, "alice").Username, clean, time.Now(), e.svc.st.Load()); err != nil || d <= 0 {
		t.Fatalf("limits for alice from a clean address: delay %v, err %v; want a delay and no refusal", d, err)
	}
	// A request that goes away stops waiting, before any LDAP call.
	calls := e.calls.Load()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := e.svc.Login(gone, LoginRequest{Name: alice, Password: ldaptest.Password, ClientIP: clean}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while slowed down: %v", err)
	}
	if e.calls.Load() != calls {
		t.Fatal("a cancelled, slowed-down login reached LDAP")
	}
	if _, err := e.svc.Login(ctx, LoginRequest{Name: alice, Password: ldaptest.Password, ClientIP: clean}); err != nil {
		t.Fatalf("right password from a clean address: %v", err)
	}
	// Over Basic too.
	if _, err := e.svc.Basic(ctx, alice, ldaptest.Password, clean); err != nil {
		t.Fatalf("basic from a clean address: %v", err)
	}
}

func TestNameDelay(t *testing.T) {
	for _, tc := range []struct {
		est  float64
		max  int
		want time.Duration
	}{
		{0, 50, 0},
		{49.9, 50, 0},
		{50, 50, nameDelayStep},
		{52, 50, 3 * nameDelayStep},
		{68, 50, 19 * nameDelayStep},
		{69, 50, maxNameDelay},
		{1e9, 50, maxNameDelay},
		{10, 0, 0},
	} {
		if got := nameDelay(tc.est, tc.max); got != tc.want {
			t.Errorf("nameDelay(%v, %d) = %v, want %v", tc.est, tc.max, got, tc.want)
		}
	}
}

// The per-name count forgets failures as the window slides.
func TestNameCountSlides(t *testing.T) {
	l := newLimiter()
	st := &settings{maxFailures: 1000, maxFailuresPerAddr: 1000, maxFailuresPerUser: 3, window: time.Minute}
	t0 := time.Unix(5000, 0)
	for i := range 4 {
		l.fail("a", netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t0, st)
	}
	if d, _ := l.check("a", ip1, t0.Add(time.Second), st); d != 2*nameDelayStep {
		t.Fatalf("4 failures, max 3: delay %v", d)
	}
	// Half a window into the next bucket: half of the 4 still count.
	if d, _ := l.check("a", ip1, t0.Add(90*time.Second), st); d != 0 {
		t.Fatalf("after 1.5 windows: delay %v", d)
	}
	if d, _ := l.check("a", ip1, t0.Add(3*time.Minute), st); d != 0 {
		t.Fatalf("after 3 windows: delay %v", d)
	}
}

// Finding 9a: the per-address limit was keyed on the exact address, so an
// IPv6 client with a /64 had endless budgets. IPv6 counts per /64, and an
// IPv4-mapped address as the IPv4 one.
func TestAddressLimitCountsIPv6Per64(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) {
		c.Login.MaxFailures = 100
		c.Login.MaxFailuresPerAddress = 3
		c.Login.MaxFailuresPerUser = 1000
		c.Login.Window = config.Duration(time.Hour)
	})
	if e == nil {
		return
	}
	ctx := context.Background()
	names := []string{e.fx.Login("alice"), e.fx.Login("bob"), e.fx.Login("dave")}
	for i, n := range names {
		ip := netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1))
		if _, err := e.svc.Login(ctx, LoginRequest{Name: n, Password: "bad", ClientIP: ip}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	var rl *RateLimitedError
	_, err := e.svc.Login(ctx, LoginRequest{Name: e.fx.Login("bob"), Password: ldaptest.Password,
		ClientIP: netip.MustParseAddr("2001:db8:1:2:ffff:ffff:ffff:fffe")})
	if !errors.As(err, &rl) || !rl.PerAddress {
		t.Fatalf("another address of the same /64: %v, want the address limit", err)
	}
	if _, err := e.svc.Login(ctx, LoginRequest{Name: e.fx.Login("bob"), Password: ldaptest.Password,
		ClientIP: netip.MustParseAddr("2001:db8:1:3::1")}); err != nil {
		t.Fatalf("the next /64: %v", err)
	}

	mapped, plain := netip.MustParseAddr("::ffff:198.51.100.9"), netip.MustParseAddr("198.51.100.9")
	for i, n := range names {
		ip := mapped
		if i == 1 {
			ip = plain
		}
		if _, err := e.svc.Login(ctx, LoginRequest{Name: n, Password: "bad", ClientIP: ip}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("v4 failure %d: %v", i, err)
		}
	}
	for _, ip := range []netip.Addr{mapped, plain} {
		if _, err := e.svc.Login(ctx, LoginRequest{Name: e.fx.Login("bob"), Password: ldaptest.Password, ClientIP: ip}); !errors.As(err, &rl) || !rl.PerAddress {
			t.Fatalf("%v after 3 failures of the IPv4 address: %v, want the address limit", ip, err)
		}
	}
	// Other IPv4 addresses are counted apart (no /24 or the like).
	if _, err := e.svc.Login(ctx, LoginRequest{Name: e.fx.Login("bob"), Password: ldaptest.Password,
		ClientIP: netip.MustParseAddr("198.51.100.10")}); err != nil {
		t.Fatalf("a neighbouring IPv4 address: %v", err)
	}
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
		{"::1", "::"},
	} {
		if got := addrKey(netip.MustParseAddr(tc.in)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("addrKey(%s) = %v, want %s", tc.in, got, tc.want)
		}
	}
	if got := addrKey(netip.Addr{}); got.IsValid() {
		t.Errorf("addrKey(zero) = %v", got)
	}
}

// Finding 8: a password change used to leave the user's sessions alive,
// and the old password kept working over Basic for up to a minute. Both
// ways a password changes are covered: the admin API (a store update of
// the hash, as api's setPassword does) and local_users on reload.
func TestPasswordChangeEndsSessions(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	ctx := context.Background()
	root := withRoot(t, e)
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, pw string)
	}{
		{"admin api", func(t *testing.T, pw string) {
			h, err := HashPassword(pw)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.UpdateUser(ctx, root.ID, func(u *account.User) error { u.PasswordHash = h; return nil }); err != nil {
				t.Fatal(err)
			}
		}},
		{"local_users reload", func(t *testing.T, pw string) {
			h, err := HashPassword(pw)
			if err != nil {
				t.Fatal(err)
			}
			if err := SyncLocalUsers(ctx, e.store, []config.LocalUser{
				{Username: "root@local", PasswordHash: config.Secret(h), Role: "admin"},
			}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := "old-" + tc.name
			tc.change(t, old)
			hot, err := e.svc.Login(ctx, LoginRequest{Name: "root@local", Password: old, ClientIP: ip1})
			if err != nil {
				t.Fatal(err)
			}
			cold, err := e.svc.Login(ctx, LoginRequest{Name: "root@local", Password: old, ClientIP: ip1})
			if err != nil {
				t.Fatal(err)
			}
			// Basic with the old password succeeds and is cached.
			for range 2 {
				if _, err := e.svc.Basic(ctx, "root@local", old, ip1); err != nil {
					t.Fatalf("basic before the change: %v", err)
				}
			}
			other := login(t, e, "alice")

			tc.change(t, "new-"+tc.name)
			e.svc.sessions.Remove(hashToken([]byte(cold.Token))) // as after a restart
			// A session made with the new password survives the old ones
			// being refused.
			fresh, err := e.svc.Login(ctx, LoginRequest{Name: "root@local", Password: "new-" + tc.name, ClientIP: ip1})
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range []string{hot.Token, cold.Token} {
				if _, err := e.svc.CheckSession(ctx, []byte(tok)); !errors.Is(err, ErrNoSession) {
					t.Fatalf("session from before the change: %v", err)
				}
			}
			if _, err := e.svc.Basic(ctx, "root@local", old, ip1); !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("basic with the old password right after the change: %v", err)
			}
			if _, err := e.svc.Basic(ctx, "root@local", "new-"+tc.name, ip1); err != nil {
				t.Fatalf("basic with the new password: %v", err)
			}
			if _, err := e.svc.CheckSession(ctx, []byte(other.Token)); err != nil {
				t.Fatalf("another user's session: %v", err)
			}
			if _, err := e.svc.CheckSession(ctx, []byte(fresh.Token)); err != nil {
				t.Fatalf("the session made with the new password: %v", err)
			}
		})
	}
}

// session.max_per_user: the 21st login (default cap 20) ends the first
// session, in the cache and in the store, and no other.
func TestSessionCapEvictsOldest(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	ctx := context.Background()
	other := login(t, e, "alice")
	var toks []string
	for range config.DefaultMaxSessionsPerUser + 1 {
		toks = append(toks, login(t, e, "bob").Token)
	}
	if _, err := e.svc.CheckSession(ctx, []byte(toks[0])); !errors.Is(err, ErrNoSession) {
		t.Fatalf("first session after the 21st login: %v", err)
	}
	if _, err := e.store.SessionByHash(ctx, hashToken([]byte(toks[0]))); err == nil {
		t.Fatal("first session still stored")
	}
	e.svc.sessions.Purge()
	for i, tok := range append(toks[1:], other.Token) {
		if _, err := e.svc.CheckSession(ctx, []byte(tok)); err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
	}
}

// A login whose password was checked against a hash changed before its
// session is stored gets no session.
func TestNoSessionForAPasswordChangedMidLogin(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	root := withRoot(t, e)
	stale := root
	stale.PasswordHash += "x"
	if _, _, err := e.svc.createSession(context.Background(), stale, e.svc.st.Load()); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("session for a stale hash: %v", err)
	}
	if _, _, err := e.svc.createSession(context.Background(), root, e.svc.st.Load()); err != nil {
		t.Fatalf("session for the current hash: %v", err)
	}
}
