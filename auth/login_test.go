package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

func TestLoginOutcomes(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) { c.Login.MaxFailures = 1000; c.Login.MaxFailuresPerAddress = 1000 })
	if e == nil {
		return
	}
	ctx := context.Background()
	e.setState(t, "frank", account.StateBlocked, account.ReasonAdmin)
	// dave is the nested one (devs, a member group of staff): he must stay
	// active for "user via nesting"; star (a direct member) is blocked.
	e.setState(t, "star", account.StateBlockedInLDAP, account.ReasonNone)
	e.fx.AddUser(t, "gina", "staff")  // joined after the sync, admitted
	e.fx.AddUser(t, "hank", "others") // joined after the sync, skipped by the rules
	pw := ldaptest.Password

	tests := []struct {
		name, login, pw, dir string
		want                 error
		role                 string
	}{
		{"admin", e.fx.Login("alice"), pw, "", nil, "admin"},
		{"user via nesting", e.fx.Login("dave"), pw, "", nil, "user"},
		{"upper case name", strings.ToUpper(e.fx.Login("bob")), pw, "", nil, "user"},
		{"bare name with directory", e.fx.Users["bob"], pw, e.fx.Dir.Name, nil, "user"},
		{"wrong password", e.fx.Login("alice"), "nope", "", ErrBadCredentials, ""},
		{"unknown user", e.fx.Prefix + "nobody@example.com", pw, "", ErrBadCredentials, ""},
		{"empty password", e.fx.Login("alice"), "", "", ErrBadCredentials, ""},
		{"unknown domain", e.fx.Users["alice"] + "@elsewhere.org", pw, "", ErrBadCredentials, ""},
		{"bare name, one directory", e.fx.Users["alice"], pw, "", ErrBadCredentials, ""},
		{"disabled in LDAP (bind refused)", e.fx.Login("carol"), pw, "", ErrBadCredentials, ""},
		{"admin block", e.fx.Login("frank"), pw, "", ErrForbidden, ""},
		{"blocked_in_ldap in store", e.fx.Login("star"), pw, "", ErrForbidden, ""},
		{"skipped by rules (never synced)", e.fx.Login("erin"), pw, "", ErrForbidden, ""},
		{"joined after sync", e.fx.Login("gina"), pw, "", nil, "user"},
		{"joined after sync, no mapped group", e.fx.Login("hank"), pw, "", ErrForbidden, ""},
		{"unknown directory", e.fx.Login("alice"), pw, "nosuch", ErrUnknownDirectory, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.svc.Login(ctx, LoginRequest{Name: tc.login, Password: tc.pw, Directory: tc.dir, ClientIP: ip1})
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if res.Token != "" {
					t.Fatal("a token on failure")
				}
				return
			}
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if res.User.Role != tc.role || !ValidToken([]byte(res.Token)) || res.User.LastLoginAt.IsZero() {
				t.Fatalf("result = %+v", res)
			}
			if want := strings.ToLower(tc.login); !strings.Contains(want, "@") {
				if res.User.Username != want+"@example.com" {
					t.Fatalf("username %q", res.User.Username)
				}
			} else if res.User.Username != want {
				t.Fatalf("username %q, want %q", res.User.Username, want)
			}
			if ttl := time.Until(res.ExpiresAt); ttl < 11*time.Hour || ttl > 12*time.Hour {
				t.Fatalf("expires in %v", ttl)
			}
			if _, err := e.svc.CheckSession(ctx, []byte(res.Token)); err != nil {
				t.Fatalf("new session: %v", err)
			}
		})
	}
	if n := counterValue(e.m.Logins.WithLabelValues(e.fx.Dir.Name, "forbidden")); n != 4 {
		t.Errorf("forbidden logins counted %v, want 4", n)
	}
	if n := counterValue(e.m.Logins.WithLabelValues(e.fx.Dir.Name, "success")); n != 5 {
		t.Errorf("successful logins counted %v, want 5", n)
	}
}

func TestEmptyPasswordNeverReachesLDAP(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	before := e.calls.Load()
	_, err := e.svc.Login(context.Background(), LoginRequest{Name: e.fx.Login("alice"), ClientIP: ip1})
	if !errors.Is(err, ErrBadCredentials) || e.calls.Load() != before {
		t.Fatalf("err=%v, LDAP calls %d→%d", err, before, e.calls.Load())
	}
}

// Filter metacharacters must be escaped exactly once: a '*' that reached
// the filter unescaped would match (and, with the shared fixture password,
// log in as) another user.
func TestFilterInjectionNames(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) { c.Login.MaxFailures = 1000; c.Login.MaxFailuresPerAddress = 1000 })
	if e == nil {
		return
	}
	p := e.fx.Prefix
	names := []string{
		"*@example.com", p + "*@example.com", p + "alice*@example.com", p + "al*ce@example.com",
		"(@example.com", ")@example.com", p + "alice)(uid=*@example.com", "*)(|(uid=*@example.com",
		"\\@example.com", p + "alice\\2a@example.com", p + "alice\x00@example.com", "\x00@example.com",
		"*", "(", ")", "\\", "\x00", p + "st\\2ar@example.com",
	}
	for _, n := range names {
		res, err := e.svc.Login(context.Background(), LoginRequest{Name: n, Password: ldaptest.Password, ClientIP: ip1})
		if !errors.Is(err, ErrBadCredentials) {
			t.Errorf("login %q: err = %v (user %q), want bad credentials", n, err, res.User.Username)
		}
	}
	// The user whose uid really contains '*' logs in as themselves only.
	res, err := e.svc.Login(context.Background(), LoginRequest{Name: e.fx.Login("star"), Password: ldaptest.Password, ClientIP: ip1})
	if err != nil || res.User.Username != strings.ToLower(e.fx.Login("star")) {
		t.Fatalf("star: %v %q", err, res.User.Username)
	}
}

func TestAmbiguousDirectory(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	fx2 := e.srv.NewFixture(t) // same server, same domain example.com
	d2 := e.addDir(t, fx2.Dir, 0)
	e.sync(t)
	ctx := context.Background()
	_, err := e.svc.Login(ctx, LoginRequest{Name: fx2.Login("bob"), Password: ldaptest.Password, ClientIP: ip1})
	if !errors.Is(err, ErrAmbiguousDirectory) {
		t.Fatalf("err = %v, want ambiguous", err)
	}
	for _, ref := range []string{fmt.Sprint(d2.Config.ID), d2.Config.Name} {
		res, err := e.svc.Login(ctx, LoginRequest{Name: fx2.Login("bob"), Password: ldaptest.Password, Directory: ref, ClientIP: ip1})
		if err != nil || res.User.DirectoryID != d2.Config.ID {
			t.Fatalf("directory %q: %v %+v", ref, err, res.User)
		}
	}
	// A bare name with a directory.
	res, err := e.svc.Login(ctx, LoginRequest{Name: fx2.Users["alice"], Password: ldaptest.Password, Directory: d2.Config.Name, ClientIP: ip1})
	if err != nil || res.User.Role != "admin" {
		t.Fatalf("bare name: %v", err)
	}
}

func TestRateLimits(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) {
		c.Login.MaxFailures = 3
		c.Login.MaxFailuresPerAddress = 5
		c.Login.Window = config.Duration(time.Minute)
	})
	if e == nil {
		return
	}
	ctx := context.Background()
	alice := e.fx.Login("alice")
	for i := range 3 {
		if _, err := e.svc.Login(ctx, LoginRequest{Name: alice, Password: "bad", ClientIP: ip1}); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	calls := e.calls.Load()
	// The pair (alice, ip1) is over its limit: even the right password
	// from ip1 is refused, without reaching LDAP.
	_, err := e.svc.Login(ctx, LoginRequest{Name: alice, Password: ldaptest.Password, ClientIP: ip1})
	var rl *RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter <= 0 || rl.RetryAfter > time.Minute || rl.PerAddress {
		t.Fatalf("4th attempt (right password, same address): %v", err)
	}
	if e.calls.Load() != calls {
		t.Fatal("a rate-limited login reached LDAP")
	}
	// The limit is per pair: alice from another address logs in.
	if _, err := e.svc.Login(ctx, LoginRequest{Name: alice, Password: ldaptest.Password, ClientIP: netip.MustParseAddr("192.0.2.99")}); err != nil {
		t.Fatalf("right password, other address: %v", err)
	}
	// bob from ip1 is a fresh pair.
	if _, err := e.svc.Login(ctx, LoginRequest{Name: e.fx.Login("bob"), Password: "bad", ClientIP: ip1}); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	// ip1 has 4 failures now; one more makes 5 and then any name is refused.
	if _, err := e.svc.Login(ctx, LoginRequest{Name: e.fx.Login("dave"), Password: "bad", ClientIP: ip1}); !errors.Is(err, ErrBadCredentials) {
		t.Fatal(err)
	}
	_, err = e.svc.Login(ctx, LoginRequest{Name: e.fx.Login("bob"), Password: ldaptest.Password, ClientIP: ip1})
	if !errors.As(err, &rl) || !rl.PerAddress {
		t.Fatalf("address limit: %v", err)
	}
	if _, err := e.svc.Login(ctx, LoginRequest{Name: e.fx.Login("bob"), Password: ldaptest.Password, ClientIP: netip.MustParseAddr("192.0.2.7")}); err != nil {
		t.Fatalf("bob from another address: %v", err)
	}
	if n := counterValue(e.m.Logins.WithLabelValues(e.fx.Dir.Name, "rate_limited")); n != 2 {
		t.Errorf("rate_limited counted %v", n)
	}
}

func TestLimiterWindowSlides(t *testing.T) {
	l := newLimiter()
	st := &settings{maxFailures: 2, maxFailuresPerAddr: 100, maxFailuresPerUser: 100, window: time.Minute}
	t0 := time.Unix(1000, 0)
	l.fail("a", ip1, t0, st)
	l.fail("a", ip1, t0.Add(30*time.Second), st)
	_, err := l.check("a", ip1, t0.Add(40*time.Second), st)
	var rl *RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 20*time.Second {
		t.Fatalf("limited: %v", err)
	}
	if _, err := l.check("a", netip.MustParseAddr("192.0.2.2"), t0.Add(40*time.Second), st); err != nil {
		t.Fatalf("the same name from another address: %v", err)
	}
	if _, err := l.check("a", ip1, t0.Add(61*time.Second), st); err != nil {
		t.Fatalf("after the first failure left the window: %v", err)
	}
	l.reset("a", ip1)
	if _, err := l.check("a", ip1, t0.Add(40*time.Second), st); err != nil {
		t.Fatalf("after reset: %v", err)
	}
}

func TestDirectoryUnavailable(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	e.srv.Stop()
	_, err := e.svc.Login(context.Background(), LoginRequest{Name: e.fx.Login("alice"), Password: ldaptest.Password, ClientIP: ip1})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want unavailable", err)
	}
}

func TestLocalUsers(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	ctx := context.Background()
	argon, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	bcb, err := bcrypt.GenerateFromPassword([]byte("b-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bc := string(bcb)
	locals := []config.LocalUser{
		{Username: "Root@Local", PasswordHash: config.Secret(argon), Role: "admin"},
		{Username: "ops@local", PasswordHash: config.Secret(bc), Role: "user", Email: "ops@example.com"},
	}
	if err := SyncLocalUsers(ctx, e.store, locals); err != nil {
		t.Fatal(err)
	}
	if err := SyncLocalUsers(ctx, e.store, locals); err != nil { // idempotent
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, pw string
		want     error
	}{
		{"root@local", "s3cret", nil},
		{"ROOT@LOCAL", "s3cret", nil},
		{"root@local", "S3cret", ErrBadCredentials},
		{"ops@local", "b-pass", nil},
		{"ops@local", "", ErrBadCredentials},
		{"nobody@local", "s3cret", ErrBadCredentials},
	} {
		res, err := e.svc.Login(ctx, LoginRequest{Name: tc.name, Password: tc.pw, ClientIP: ip1})
		if !errors.Is(err, tc.want) || (tc.want == nil && res.User.Source != account.SourceLocal) {
			t.Errorf("%s/%q: %v", tc.name, tc.pw, err)
		}
	}
	root, _ := e.store.UserByName(ctx, "root@local")
	if root.Role != "admin" || root.Source != account.SourceLocal {
		t.Fatalf("root: %+v", root)
	}
	// A role change in the file is applied; an admin block survives.
	if _, err := e.store.UpdateUser(ctx, root.ID, func(u *account.User) error {
		u.State, u.BlockReason = account.StateBlocked, account.ReasonAdmin
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	locals[0].Role = "user"
	if err := SyncLocalUsers(ctx, e.store, locals); err != nil {
		t.Fatal(err)
	}
	root, _ = e.store.UserByName(ctx, "root@local")
	if root.Role != "user" || root.State != account.StateBlocked {
		t.Fatalf("after resync: %+v", root)
	}
	if _, err := e.svc.Login(ctx, LoginRequest{Name: "root@local", Password: "s3cret", ClientIP: ip1}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("blocked local user: %v", err)
	}
	if err := SyncLocalUsers(ctx, e.store, []config.LocalUser{{Username: "x@local", PasswordHash: "plain", Role: "user"}}); !errors.Is(err, ErrBadHash) {
		t.Fatalf("bad hash: %v", err)
	}
	// A user removed from the file loses their account (a failed sync
	// above removed nobody: ops@local still logs in here).
	if _, err := e.svc.Login(ctx, LoginRequest{Name: "ops@local", Password: "b-pass", ClientIP: ip1}); err != nil {
		t.Fatalf("ops@local before removal: %v", err)
	}
	if err := SyncLocalUsers(ctx, e.store, locals[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, LoginRequest{Name: "ops@local", Password: "b-pass", ClientIP: ip1}); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("ops@local removed from the file: %v", err)
	}
}

func TestPasswordHashes(t *testing.T) {
	h, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", h)
	}
	h2, _ := HashPassword("pw")
	if h == h2 {
		t.Fatal("same salt twice")
	}
	for _, tc := range []struct {
		hash, pw string
		ok       bool
		err      bool
	}{
		{h, "pw", true, false},
		{h, "pw ", false, false},
		{h, "", false, false},
		{"$argon2id$v=19$m=9999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "pw", false, true},
		{"$argon2id$v=18$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "pw", false, true},
		{"$argon2id$v=19$m=1024,t=1,p=1$$aGFzaGhhc2hoYXNoaGFzaA", "pw", false, true},
		{"$argon2i$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA", "pw", false, true},
		{"$2b$04$tooshort", "pw", false, true},
		{"plain", "plain", false, true},
		{"", "", false, true},
	} {
		ok, err := VerifyPassword(tc.hash, tc.pw)
		if ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("VerifyPassword(%q, %q) = %v, %v", tc.hash, tc.pw, ok, err)
		}
	}
}

// Legacy naming: the mail is the login name, and the directory is
// searched by it.
func TestLegacyEmailNaming(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	if srv == nil {
		return
	}
	e := newEnv(t, srv, nil)
	fx2 := srv.NewFixture(t)
	fx2.Dir.Naming = config.NamingEmail
	fx2.Dir.Name += "mail"
	d := e.addDir(t, fx2.Dir, 0)
	e.sync(t)
	ctx := context.Background()
	mail := strings.ToLower(fx2.Users["bob"]) + "@example.com"
	// Two directories; only the email-naming one... but example.com is the
	// first one's domain: the name goes there unless the directory is chosen.
	res, err := e.svc.Login(ctx, LoginRequest{Name: mail, Password: ldaptest.Password, Directory: d.Config.Name, ClientIP: ip1})
	if err != nil || res.User.DirectoryID != d.Config.ID || res.User.Username != mail {
		t.Fatalf("legacy login: %v %+v", err, res.User)
	}
	_, err = e.svc.Login(ctx, LoginRequest{Name: mail, Password: "bad", Directory: d.Config.Name, ClientIP: ip1})
	if !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}

	// The mail need not be the login attribute's value at some domain (on
	// AD it rarely is: sAMAccountName jsmith, mail john.smith@...): the
	// directory is searched by mail.
	other := "someone.else." + strings.ToLower(fx2.Prefix) + "@mail.example.org"
	srv.SetUserAttribute(t, fx2.Users["alice"], "mail", other)
	e.sync(t)
	res, err = e.svc.Login(ctx, LoginRequest{Name: other, Password: ldaptest.Password, Directory: d.Config.Name, ClientIP: ip1})
	if err != nil || res.User.Username != other || res.User.DirectoryID != d.Config.ID {
		t.Fatalf("login by a mail unrelated to the uid: %v %+v", err, res.User)
	}

	// Someone added to the directory after the last sync logs in by mail
	// and is synced alone on the spot (SPEC §5).
	fx2.AddUser(t, "newcomer", "staff")
	newMail := strings.ToLower(fx2.Users["newcomer"]) + "@example.com"
	res, err = e.svc.Login(ctx, LoginRequest{Name: newMail, Password: ldaptest.Password, Directory: d.Config.Name, ClientIP: ip1})
	if err != nil || res.User.Username != newMail || res.User.Role != "user" {
		t.Fatalf("legacy login of a user not synced yet: %v %+v", err, res.User)
	}
}

// setLDAPPassword changes a fixture user's password with the admin bind.
func setLDAPPassword(t *testing.T, e *env, logical, pw string) {
	t.Helper()
	c := e.srv.AdminConn(t)
	dn := "uid=" + ldap.EscapeDN(e.fx.Users[logical]) + ",ou=users,ou=" + e.fx.Prefix + "," + e.srv.BaseDN
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace("userPassword", []string{pw})
	if err := c.Modify(req); err != nil {
		t.Fatal(err)
	}
}

// TestPasswordChangeOfALocalUser: the change endpoint is for directory
// users; a local user's password is the administrator's to set. The old
// password is checked first, so a stranger learns nothing.
func TestPasswordChangeOfALocalUser(t *testing.T) {
	e := newEnv(t, nil, nil)
	if e == nil {
		return
	}
	hash, err := HashPassword("s3cret-local")
	if err != nil {
		t.Fatal(err)
	}
	if err := SyncLocalUsers(context.Background(), e.store, []config.LocalUser{
		{Username: "root@local", PasswordHash: config.Secret(hash), Role: "admin"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		old  string
		want error
	}{{"wrong", ErrBadCredentials}, {"s3cret-local", ErrNotDirectoryUser}} {
		_, err := e.svc.ChangePassword(context.Background(), ChangeRequest{Name: "root@local", OldPassword: tc.old,
			NewPassword: "Another-Pass-1", ClientIP: ip1})
		if !errors.Is(err, tc.want) {
			t.Fatalf("change with old password %q: %v, want %v", tc.old, err, tc.want)
		}
	}
	if _, err := e.svc.Login(context.Background(), LoginRequest{Name: "root@local", Password: "s3cret-local", ClientIP: ip1}); err != nil {
		t.Fatalf("the local password changed: %v", err)
	}
}
