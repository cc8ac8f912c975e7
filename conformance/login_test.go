package conformance

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// status is the HTTP answer the web front gives an auth.Login outcome
// (SPEC §5): 200, 401 for every credential failure (a disabled directory
// account included: one answer, so account state does not leak), 403 for a
// right password whose user may not log in.
func status(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, auth.ErrBadCredentials):
		return http.StatusUnauthorized
	case errors.Is(err, auth.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, auth.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// TestLoginConformance runs the login table through auth.Service against a
// directory synced once, on every flavour. The outcomes are the same
// everywhere although the directories refuse a disabled account three ways
// (ppolicy 49, AD 49/data 533, 389-ds 53).
func TestLoginConformance(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		t.Parallel()
		ctx := testCtx(t)
		f := s.NewFixture(t)
		cfg := dirConfig(f)
		env := newSyncEnv(t, cfg)
		mustSync(t, ctx, env)

		conf := &config.Config{}
		conf.ApplyDefaults()
		// The table fails some names more than once; the limiter has its
		// own tests.
		conf.Login.MaxFailures = 100
		conf.Login.MaxFailuresPerAddress = 1000
		svc, err := auth.New(auth.Deps{Config: conf, Store: env.store, Dirs: env.dirs, Syncer: env.syncer})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)

		// Changes after the sync: the login path must see them without one.
		adminBlock(t, ctx, env, f, "frank")
		f.AddUser(t, "newcomer", "staff") // joined after the last sync
		f.AddUser(t, "newadmin", "admins")
		f.AddUser(t, "stranger", "others") // in no mapped group
		f.DeleteUser(t, "bob")             // gone from the directory, still active in the store

		ip := netip.MustParseAddr("127.0.0.1")
		for _, tc := range []struct {
			name      string
			on        flavors
			login     string
			password  string
			directory string
			want      int
			as        string // on 200: the logical user logged in
			role      string // and their role
		}{
			{"alice", all, f.Login("alice"), ldaptest.Password, "", 200, "alice", "admin"},
			{"alice, name in upper case", all, strings.ToUpper(f.Login("alice")), ldaptest.Password, "", 200, "alice", "admin"},
			{"alice, bare username with the directory", all, f.Users["alice"], ldaptest.Password, cfg.Name, 200, "alice", "admin"},
			{"dave through the nested group", all, f.Login("dave"), ldaptest.Password, "", 200, "dave", "user"},
			{"star: filter metacharacters in the name", all, f.Login("star"), ldaptest.Password, "", 200, "star", "user"},
			{"alice, wrong password", all, f.Login("alice"), "wrong", "", 401, "", ""},
			{"alice, empty password", all, f.Login("alice"), "", "", 401, "", ""},
			{"unknown user", all, f.Prefix + "nobody@example.com", ldaptest.Password, "", 401, "", ""},
			{"wildcard name", all, f.Prefix + "al*@example.com", ldaptest.Password, "", 401, "", ""},
			{"carol, disabled in the directory", all, f.Login("carol"), ldaptest.Password, "", 401, "", ""},
			{"bob, deleted from the directory since the sync", all, f.Login("bob"), ldaptest.Password, "", 401, "", ""},
			{"frank, blocked by an admin", all, f.Login("frank"), ldaptest.Password, "", 403, "", ""},
			{"erin, in no mapped group", all, f.Login("erin"), ldaptest.Password, "", 403, "", ""},
			{"stranger, joined after the sync, no mapped group", all, f.Login("stranger"), ldaptest.Password, "", 403, "", ""},
			{"newcomer, joined after the sync: synced on the spot", all, f.Login("newcomer"), ldaptest.Password, "", 200, "newcomer", "user"},
			{"newadmin, joined after the sync: synced on the spot", all, f.Login("newadmin"), ldaptest.Password, "", 200, "newadmin", "admin"},
			{"newcomer again, now from the store", all, f.Login("newcomer"), ldaptest.Password, "", 200, "newcomer", "user"},
			{"newcomer, wrong password", all, f.Login("newcomer"), "wrong", "", 401, "", ""},
			// Rule 2 on AD: the password is right, staff is mapped, but
			// no path leads to Builtin\Users.
			{"outsider, outside Builtin\\Users", only(samba), f.Login("outsider"), ldaptest.Password, "", 403, "", ""},
			{"primary, staff as primary group", only(samba), f.Login("primary"), ldaptest.Password, "", 200, "primary", "user"},
		} {
			if !tc.on.has(s.Flavor) {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				res, err := svc.Login(ctx, auth.LoginRequest{Name: tc.login, Password: tc.password,
					Directory: tc.directory, ClientIP: ip})
				if got := status(err); got != tc.want {
					t.Fatalf("Login(%q) = %d (%v), want %d", tc.login, got, err, tc.want)
				}
				if tc.directory == "" {
					// Authorization: Basic runs the same checks.
					if _, berr := svc.Basic(ctx, tc.login, tc.password, ip); status(berr) != tc.want {
						t.Errorf("Basic(%q) = %d (%v), want %d", tc.login, status(berr), berr, tc.want)
					}
				}
				if tc.want != 200 {
					return
				}
				if res.Token == "" || !strings.EqualFold(res.User.Username, f.Login(tc.as)) ||
					res.User.Role != tc.role || !res.User.Active() {
					t.Fatalf("Login(%q) = user %q role %q state %s token set %v, want %s role %q",
						tc.login, res.User.Username, res.User.Role, res.User.State, res.Token != "", f.Login(tc.as), tc.role)
				}
				// The session works.
				if u, err := svc.CheckSession(ctx, []byte(res.Token)); err != nil || u.ID != res.User.ID {
					t.Fatalf("session of %q: %v, %v", tc.login, u.ID, err)
				}
			})
		}

		// The on-the-spot sync admitted the newcomers and nobody else, and
		// left the rest of the directory alone (bob is still active in
		// the store: only a full sync blocks him).
		for _, c := range []struct {
			logical string
			state   account.State
			role    string
		}{{"newcomer", account.StateActive, "user"}, {"newadmin", account.StateActive, "admin"},
			{"bob", account.StateActive, "user"}} {
			expectUser(t, ctx, env, f, c.logical, c.state, "", c.role)
		}
		for _, logical := range []string{"stranger", "erin"} {
			if u, err := env.store.UserByName(ctx, f.Login(logical)); err == nil {
				t.Errorf("%s in the store after a refused login: %s", logical, u.State)
			}
		}
	})
}
