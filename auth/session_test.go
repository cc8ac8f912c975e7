package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

func login(t testing.TB, e *env, logical string) LoginResult {
	t.Helper()
	res, err := e.svc.Login(context.Background(), LoginRequest{Name: e.fx.Login(logical), Password: ldaptest.Password, ClientIP: ip1})
	if err != nil {
		t.Fatalf("login %s: %v", logical, err)
	}
	return res
}

func TestSessionLifecycle(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	ctx := context.Background()

	t.Run("stored as a hash only", func(t *testing.T) {
		res := login(t, e, "alice")
		if _, err := e.store.SessionByHash(ctx, hashToken([]byte(res.Token))); err != nil {
			t.Fatalf("stored session: %v", err)
		}
		if len(res.Token) != TokenLen {
			t.Fatalf("token %q", res.Token)
		}
	})

	t.Run("survives a cold cache", func(t *testing.T) {
		res := login(t, e, "alice")
		e.svc.sessions.Purge()
		u, err := e.svc.CheckSession(ctx, []byte(res.Token))
		if err != nil || u.Username != res.User.Username {
			t.Fatalf("cold check: %v", err)
		}
	})

	t.Run("logout", func(t *testing.T) {
		res := login(t, e, "bob")
		if err := e.svc.Logout(ctx, res.Token); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CheckSession(ctx, []byte(res.Token)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("after logout: %v", err)
		}
		if err := e.svc.Logout(ctx, res.Token); err != nil {
			t.Fatalf("second logout: %v", err)
		}
	})

	t.Run("block ends every session, unblock does not revive them", func(t *testing.T) {
		a, b := login(t, e, "bob"), login(t, e, "bob")
		other := login(t, e, "alice")
		e.setState(t, "bob", account.StateBlocked, account.ReasonAdmin)
		if _, err := e.svc.CheckSession(ctx, []byte(a.Token)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("blocked: %v", err)
		}
		e.setState(t, "bob", account.StateActive, account.ReasonNone)
		for _, tok := range []string{a.Token, b.Token} {
			if _, err := e.svc.CheckSession(ctx, []byte(tok)); !errors.Is(err, ErrNoSession) {
				t.Fatalf("after unblock: %v", err)
			}
		}
		if _, err := e.svc.CheckSession(ctx, []byte(other.Token)); err != nil {
			t.Fatalf("other user's session: %v", err)
		}
	})

	t.Run("sync that blocks ends sessions", func(t *testing.T) {
		res := login(t, e, "dave")
		e.fx.RemoveMember(t, "devs", "dave") // out of scope now
		e.sync(t)
		if u, _ := e.store.UserByName(ctx, e.fx.Login("dave")); u.Active() {
			t.Fatalf("sync left dave active: %+v", u)
		}
		if _, err := e.svc.CheckSession(ctx, []byte(res.Token)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("after sync block: %v", err)
		}
	})

	t.Run("deleted user", func(t *testing.T) {
		res := login(t, e, "frank")
		if err := e.store.DeleteUser(ctx, res.User.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CheckSession(ctx, []byte(res.Token)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("deleted user: %v", err)
		}
	})

	t.Run("EndUserSessions", func(t *testing.T) {
		res := login(t, e, "alice")
		if err := e.svc.EndUserSessions(ctx, res.User.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.CheckSession(ctx, []byte(res.Token)); !errors.Is(err, ErrNoSession) {
			t.Fatalf("after EndUserSessions: %v", err)
		}
	})

	t.Run("malformed tokens", func(t *testing.T) {
		for _, tok := range []string{"", "x", res43('A') + "=", res43('+'), res43('A')[:42] + "\x00"} {
			if _, err := e.svc.CheckSession(ctx, []byte(tok)); !errors.Is(err, ErrNoSession) {
				t.Fatalf("%q: %v", tok, err)
			}
		}
		if _, err := e.svc.CheckSession(ctx, []byte(res43('A'))); !errors.Is(err, ErrNoSession) {
			t.Fatal("unknown well-formed token accepted")
		}
	})
}

func res43(c byte) string {
	b := make([]byte, TokenLen)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// TestSessionExpiryAndIdle steps a fake session clock: an unused session
// ends after the idle timeout, a used one lives on (its LastSeen written
// back) until its absolute TTL. No sleeps: a loaded machine cannot stretch
// the gaps between uses past the idle timeout.
func TestSessionExpiryAndIdle(t *testing.T) {
	const (
		ttl  = 1500 * time.Millisecond
		idle = 400 * time.Millisecond
		step = 150 * time.Millisecond // between uses of the busy session
	)
	e := newEnv(t, nil, func(c *config.Config) {
		c.Session.TTL = config.Duration(ttl)
		c.Session.IdleTimeout = config.Duration(idle)
	})
	if e == nil {
		return
	}
	old, oldClock := touchEvery, sessionClock
	touchEvery = 100 * time.Millisecond
	base := time.Now()
	var elapsed atomic.Int64
	sessionClock = func() time.Time { return base.Add(time.Duration(elapsed.Load())) }
	t.Cleanup(func() { touchEvery, sessionClock = old, oldClock })
	advance := func(d time.Duration) { elapsed.Add(int64(d)) }
	ctx := context.Background()

	idleSess := login(t, e, "alice")
	busy := login(t, e, "alice")
	if !busy.ExpiresAt.Equal(base.Add(ttl)) {
		t.Fatalf("expires at %v, want %v", busy.ExpiresAt, base.Add(ttl))
	}
	// busy is used every step: its LastSeen is refreshed, so it outlives
	// the idle timeout; idle is not and ends.
	for range 4 {
		advance(step)
		if _, err := e.svc.CheckSession(ctx, []byte(busy.Token)); err != nil {
			t.Fatalf("busy session at +%v: %v", time.Duration(elapsed.Load()), err)
		}
	}
	if _, err := e.svc.CheckSession(ctx, []byte(idleSess.Token)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("idle session at +%v: %v", time.Duration(elapsed.Load()), err)
	}
	// The refreshed LastSeen is in the store (a restart keeps it).
	s, err := e.store.SessionByHash(ctx, hashToken([]byte(busy.Token)))
	// (To the microsecond: PostgreSQL's precision.)
	if err != nil || !s.LastSeen.Truncate(time.Microsecond).Equal(sessionClock().Truncate(time.Microsecond)) {
		t.Fatalf("stored LastSeen %v, want %v (%v)", s.LastSeen, sessionClock(), err)
	}
	// Used all along, it still ends at its TTL.
	for sessionClock().Before(busy.ExpiresAt) {
		if _, err := e.svc.CheckSession(ctx, []byte(busy.Token)); err != nil {
			t.Fatalf("busy session before its TTL, at +%v: %v", time.Duration(elapsed.Load()), err)
		}
		advance(step)
	}
	if _, err := e.svc.CheckSession(ctx, []byte(busy.Token)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("expired session: %v", err)
	}
}

func TestRequestTokens(t *testing.T) {
	tok := res43('a')
	tok2 := res43('b')
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    [3]string
	}{
		{"bearer", map[string]string{"Authorization": "Bearer " + tok}, [3]string{tok, "", ""}},
		{"bearer lower case, tabs", map[string]string{"Authorization": "bearer\t " + tok + " "}, [3]string{tok, "", ""}},
		{"bearer malformed", map[string]string{"Authorization": "Bearer " + tok + "x"}, [3]string{}},
		{"basic is not a token", map[string]string{"Authorization": "Basic " + tok}, [3]string{}},
		{"xsrf", map[string]string{"X-XSRF-TOKEN": tok}, [3]string{"", tok, ""}},
		{"cookie", map[string]string{"Cookie": "a=b; sess=" + tok + "; c=d"}, [3]string{"", "", tok}},
		{"other cookie", map[string]string{"Cookie": "sess2=" + tok}, [3]string{}},
		{"all", map[string]string{"Authorization": "Bearer " + tok, "x-xsrf-token": tok2, "Cookie": "sess=" + tok}, [3]string{tok, tok2, tok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			got := RequestTokens(&h, "sess")
			for i := range got {
				if string(got[i]) != tc.want[i] {
					t.Fatalf("tokens[%d] = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseBasic(t *testing.T) {
	for _, tc := range []struct {
		in         string
		user, pass string
		ok         bool
	}{
		{"Basic YWxpY2VAZXhhbXBsZS5jb206cDpx", "alice@example.com", "p:q", true},
		{"basic  YTpi", "a", "b", true},
		{"Basic Og==", "", "", false},
		{"Basic YWJj", "", "", false},
		{"Basic !!!", "", "", false},
		{"Bearer YTpi", "", "", false},
		{"BasicYTpi", "", "", false},
	} {
		u, p, ok := ParseBasic([]byte(tc.in))
		if u != tc.user || p != tc.pass || ok != tc.ok {
			t.Errorf("ParseBasic(%q) = %q, %q, %v", tc.in, u, p, ok)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) { c.Login.MaxFailures = 100 })
	if e == nil {
		return
	}
	ctx := context.Background()
	bob := e.fx.Login("bob")

	u, err := e.svc.Basic(ctx, bob, ldaptest.Password, ip1)
	if err != nil || u.Username != bob {
		t.Fatalf("basic: %v", err)
	}
	calls := e.calls.Load()
	if _, err := e.svc.Basic(ctx, bob, ldaptest.Password, ip1); err != nil || e.calls.Load() != calls {
		t.Fatalf("cached success: err %v, binds %d→%d", err, calls, e.calls.Load())
	}
	if n, _ := e.store.CountSessions(ctx); n != 0 {
		t.Fatalf("Basic auth created %d sessions", n)
	}

	// A failure is not cached: once the directory takes that password, it works.
	if _, err := e.svc.Basic(ctx, bob, "New-Pass-2", ip1); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	setLDAPPassword(t, e, "bob", "New-Pass-2")
	if _, err := e.svc.Basic(ctx, bob, "New-Pass-2", ip1); err != nil {
		t.Fatalf("after the password change: %v", err)
	}

	// A cached success still needs an active store user.
	e.setState(t, "bob", account.StateBlocked, account.ReasonAdmin)
	calls = e.calls.Load()
	if _, err := e.svc.Basic(ctx, bob, "New-Pass-2", ip1); !errors.Is(err, ErrForbidden) {
		t.Fatalf("blocked: %v", err)
	}
	if e.calls.Load() != calls {
		t.Fatal("blocked check went to LDAP instead of the cache")
	}
}

func TestBasicAuthCollapsesConcurrentChecks(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	if srv == nil {
		return
	}
	e := &env{}
	e = newEnv(t, srv, nil)
	// Re-register the directory slowed down so the checks overlap.
	e.dirs.Replace(nil)
	e.addDir(t, e.fx.Dir, 200*time.Millisecond)
	before := e.calls.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := e.svc.Basic(context.Background(), e.fx.Login("alice"), ldaptest.Password, ip1)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.calls.Load() - before; n != 1 {
		t.Fatalf("%d binds for 8 concurrent identical checks, want 1", n)
	}
}
