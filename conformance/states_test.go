package conformance

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// stateStatus extends status with the answers of SPEC §13.
func stateStatus(err error) (int, string) {
	var refused *auth.PasswordRefusedError
	switch {
	case errors.Is(err, auth.ErrPasswordChangeRequired):
		return http.StatusForbidden, "password_change_required"
	case errors.Is(err, auth.ErrAccountLocked):
		return http.StatusForbidden, "account_locked"
	case errors.As(err, &refused):
		return http.StatusUnprocessableEntity, refused.Reason
	case errors.Is(err, auth.ErrTLSRequired):
		return http.StatusUnprocessableEntity, "tls_required"
	}
	return status(err), ""
}

// TestAccountStates runs SPEC §13's account-state table on every flavour:
// what a sync makes of each state (state, ldap_status), what a login
// answers with the right and a wrong password, and a password change
// (RFC 3062 on OpenLDAP and 389-ds, unicodePwd over LDAPS on AD).
//
// Where the table has "—" (no account expiry on OpenLDAP, no lockout on
// 389-ds, AD password expiry which needs the shared domain's maxPwdAge)
// the row is left out. A temporary lockout answers 403 account_locked as
// the table says, whatever the password: slapd and AD report the lock
// before checking it (SECURITY.md).
func TestAccountStates(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		t.Parallel()
		ctx := testCtx(t)
		f := s.NewFixture(t)
		cfg := dirConfig(f)
		if s.Flavor != openldap {
			// AD and 389-ds change passwords only over TLS.
			cfg.URLs = []string{s.LDAPSURL}
			cfg.TLS = config.TLS{CAFile: s.CAFile}
		}

		for _, name := range []string{"mustchange", "pwexpired", "expired", "later", "both", "locked", "changer", "shorty", "lapsing"} {
			f.AddUser(t, name, "staff")
		}
		f.SetMustChangePassword(t, "mustchange")
		hasPwExpiry := f.SetPasswordExpired(t, "pwexpired")
		hasExpiry := f.SetAccountExpires(t, "expired", time.Now().Add(-time.Hour))
		f.SetAccountExpires(t, "later", time.Now().Add(24*time.Hour))
		f.SetAccountExpires(t, "both", time.Now().Add(-time.Hour))
		f.SetDisabled(t, "both", true)
		hasLockout := f.SetLockedOut(t, "locked")
		f.UseStatesPolicy(t, "shorty")

		env := newSyncEnv(t, cfg)
		mustSync(t, ctx, env)

		// The sync: only disabled and expired accounts are blocked.
		for _, c := range []struct {
			logical string
			on      bool
			state   account.State
			status  account.LDAPStatus
		}{
			{"alice", true, account.StateActive, ""},
			{"carol", true, account.StateBlockedInLDAP, account.LDAPStatusDisabled},
			{"mustchange", true, account.StateActive, ""},
			{"pwexpired", hasPwExpiry, account.StateActive, ""},
			{"expired", hasExpiry, account.StateBlockedInLDAP, account.LDAPStatusExpired},
			{"later", hasExpiry, account.StateActive, ""},
			{"both", hasExpiry, account.StateBlockedInLDAP, account.LDAPStatusDisabled},
			{"locked", hasLockout, account.StateActive, ""},
		} {
			if !c.on {
				continue
			}
			want := "user"
			if c.logical == "alice" {
				want = "admin"
			}
			u := expectUser(t, ctx, env, f, c.logical, c.state, "", want)
			if c.logical == "alice" {
				continue
			}
			if u.LDAPStatus != c.status {
				t.Errorf("%s: ldap_status %q, want %q", c.logical, u.LDAPStatus, c.status)
			}
		}

		conf := &config.Config{}
		conf.ApplyDefaults()
		conf.Login.MaxFailures = 100
		conf.Login.MaxFailuresPerAddress = 1000
		svc, err := auth.New(auth.Deps{Config: conf, Store: env.store, Dirs: env.dirs, Syncer: env.syncer})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		ip := netip.MustParseAddr("127.0.0.1")
		const newPassword = "Changed-Pass-2"

		for _, tc := range []struct {
			name     string
			on       bool
			logical  string
			password string
			want     int
			code     string
		}{
			{"must change, right password", true, "mustchange", ldaptest.Password, 403, "password_change_required"},
			{"must change, wrong password", true, "mustchange", "Wrong-Pass1", 401, ""},
			{"password expired, right password", hasPwExpiry, "pwexpired", ldaptest.Password, 403, "password_change_required"},
			{"password expired, wrong password", hasPwExpiry, "pwexpired", "Wrong-Pass1", 401, ""},
			{"account expired, right password", hasExpiry, "expired", ldaptest.Password, 403, ""},
			{"account expired, wrong password", hasExpiry, "expired", "Wrong-Pass1", 401, ""},
			{"expires later", hasExpiry, "later", ldaptest.Password, 200, ""},
			{"disabled and expired", hasExpiry, "both", ldaptest.Password, 401, ""},
			// SPEC §13: 403 account_locked; the directories report the
			// lock whatever the password.
			{"locked out, right password", hasLockout, "locked", ldaptest.Password, 403, "account_locked"},
			{"locked out, wrong password", hasLockout, "locked", "Wrong-Pass1", 403, "account_locked"},
		} {
			if !tc.on {
				continue
			}
			t.Run("login "+tc.name, func(t *testing.T) {
				_, err := svc.Login(ctx, auth.LoginRequest{Name: f.Login(tc.logical), Password: tc.password, ClientIP: ip})
				if got, code := stateStatus(err); got != tc.want || code != tc.code {
					t.Fatalf("Login(%s) = %d %q (%v), want %d %q", tc.logical, got, code, err, tc.want, tc.code)
				}
			})
		}
		if hasLockout {
			expectUser(t, ctx, env, f, "locked", account.StateActive, "", "user")
		}
		if hasExpiry {
			// Expired after the last sync: the login refuses and records
			// it in the store at once (SPEC §13: state read at login).
			expectUser(t, ctx, env, f, "lapsing", account.StateActive, "", "user")
			f.SetAccountExpires(t, "lapsing", time.Now().Add(-time.Minute))
			_, err := svc.Login(ctx, auth.LoginRequest{Name: f.Login("lapsing"), Password: ldaptest.Password, ClientIP: ip})
			if got, _ := stateStatus(err); got != 403 {
				t.Fatalf("login of an account expired since the sync = %d (%v), want 403", got, err)
			}
			if u := expectUser(t, ctx, env, f, "lapsing", account.StateBlockedInLDAP, "", "user"); u.LDAPStatus != account.LDAPStatusExpired {
				t.Errorf("lapsing after the refused login: ldap_status %q, want expired", u.LDAPStatus)
			}
		}

		change := func(logical, oldPw, newPw string) (auth.LoginResult, error) {
			return svc.ChangePassword(ctx, auth.ChangeRequest{Name: f.Login(logical), OldPassword: oldPw,
				NewPassword: newPw, ClientIP: ip})
		}
		t.Run("change with a wrong old password", func(t *testing.T) {
			_, err := change("changer", "Wrong-Pass1", newPassword)
			if got, _ := stateStatus(err); got != 401 {
				t.Fatalf("ChangePassword = %d (%v), want 401", got, err)
			}
		})
		t.Run("change of an unknown user", func(t *testing.T) {
			_, err := svc.ChangePassword(ctx, auth.ChangeRequest{Name: f.Prefix + "nobody@example.com",
				OldPassword: ldaptest.Password, NewPassword: newPassword, ClientIP: ip})
			if got, _ := stateStatus(err); got != 401 {
				t.Fatalf("ChangePassword = %d (%v), want 401", got, err)
			}
		})
		t.Run("change, then log in with the new password only", func(t *testing.T) {
			res, err := change("changer", ldaptest.Password, newPassword)
			if err != nil || res.Token == "" || !strings.EqualFold(res.User.Username, f.Login("changer")) {
				t.Fatalf("ChangePassword = %+v, %v", res.User, err)
			}
			if _, err := svc.Login(ctx, auth.LoginRequest{Name: f.Login("changer"), Password: newPassword, ClientIP: ip}); err != nil {
				t.Fatalf("login with the new password: %v", err)
			}
			if _, err := svc.Login(ctx, auth.LoginRequest{Name: f.Login("changer"), Password: ldaptest.Password, ClientIP: ip}); status(err) != 401 {
				t.Fatalf("login with the old password: %v, want 401", err)
			}
		})
		if s.Flavor != ds389 {
			// A plain 389-ds keeps krbPasswordExpiration as it was (FreeIPA's
			// password plugin moves it on): the change works, the must-change
			// answer stays.
			t.Run("must-change user changes the password and is logged in", func(t *testing.T) {
				res, err := change("mustchange", ldaptest.Password, newPassword)
				if err != nil || res.Token == "" {
					t.Fatalf("ChangePassword = %+v, %v", res.User, err)
				}
				if _, err := svc.Login(ctx, auth.LoginRequest{Name: f.Login("mustchange"), Password: newPassword, ClientIP: ip}); err != nil {
					t.Fatalf("login with the new password: %v", err)
				}
			})
		}
		if hasPwExpiry {
			// ppolicy without grace logins: an expired password no longer
			// binds, so its owner cannot change it; the answer says so.
			t.Run("password expired without grace: refused in words", func(t *testing.T) {
				_, err := change("pwexpired", ldaptest.Password, newPassword)
				if got, reason := stateStatus(err); got != 422 || !strings.Contains(reason, "administrator") {
					t.Fatalf("ChangePassword = %d %q (%v), want 422 naming the way out", got, reason, err)
				}
			})
		}
		if s.Flavor != ds389 {
			// ppolicy's pwdMinLength (passwordTooShort control), a PSO's
			// minimum length on AD (Samba's words after 0000052D).
			t.Run("too short for the policy: the directory's reason", func(t *testing.T) {
				_, err := change("shorty", ldaptest.Password, "Short-1")
				got, reason := stateStatus(err)
				if got != 422 || !strings.Contains(reason, "too short") {
					t.Fatalf("ChangePassword = %d %q (%v), want 422 saying too short", got, reason, err)
				}
				if _, err := svc.Login(ctx, auth.LoginRequest{Name: f.Login("shorty"), Password: ldaptest.Password, ClientIP: ip}); err != nil {
					t.Fatalf("the refused change changed the password: %v", err)
				}
			})
		}
		if s.Flavor == samba {
			// AD takes unicodePwd only over TLS: on a clear-text connection
			// the change is refused before any password is sent.
			t.Run("AD over clear text: tls_required", func(t *testing.T) {
				plain := dirConfig(f)
				plain.URLs = []string{s.URL}
				plainEnv := newSyncEnv(t, plain)
				psvc, err := auth.New(auth.Deps{Config: conf, Store: plainEnv.store, Dirs: plainEnv.dirs, Syncer: plainEnv.syncer})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(psvc.Close)
				// The same answer for a known and an unknown name: it comes
				// before any look-up.
				for _, name := range []string{f.Login("alice"), f.Prefix + "nobody@example.com"} {
					_, err = psvc.ChangePassword(ctx, auth.ChangeRequest{Name: name, OldPassword: ldaptest.Password,
						NewPassword: newPassword, ClientIP: ip})
					if got, code := stateStatus(err); got != 422 || code != "tls_required" {
						t.Fatalf("ChangePassword(%s) over ldap:// = %d %q (%v), want 422 tls_required", name, got, code, err)
					}
				}
			})
		}
	})
}
