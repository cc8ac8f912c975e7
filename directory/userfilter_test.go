package directory

import (
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// TestSlapdUserFilter: users outside user_filter are read with OutOfScope
// (SPEC §4 rule 7: the syncer must tell "left the filter" from "deleted"),
// by ReadUsers over every page and by FindUser, and the flag follows the
// directory when the entry changes.
func TestSlapdUserFilter(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t) // page_size 2: every search below pages
	bob, star := f.Users["bob"], f.Users["star"]
	s.SetUserAttribute(t, bob, "employeeType", "contractor")
	s.SetUserAttribute(t, star, "employeeType", "Contractor") // the server's matching rule (caseIgnoreMatch) decides

	cfg := f.Dir
	cfg.UserFilter = "(!(employeeType=contractor))"
	// disabled_filter is decided for out-of-scope users too.
	cfg.DisabledFilter = "(uid=" + ldap.EscapeFilter(bob) + ")"
	l := openT(t, cfg)

	read := func(t *testing.T) map[string]User {
		t.Helper()
		got := map[string]User{}
		if err := l.ReadUsers(testCtx(t), func(u User) error { got[u.Username] = u; return nil }); err != nil {
			t.Fatalf("ReadUsers: %v", err)
		}
		return got
	}
	check := func(t *testing.T, out map[string]bool) {
		t.Helper()
		got := read(t)
		if len(got) != len(f.Users) {
			t.Errorf("ReadUsers returned %d users, want all %d: the filter must not hide anyone", len(got), len(f.Users))
		}
		for name, login := range f.Users {
			u, ok := got[login]
			if !ok {
				t.Errorf("%s missing from the read", name)
				continue
			}
			if u.OutOfScope != out[name] {
				t.Errorf("ReadUsers %s: OutOfScope = %v, want %v", name, u.OutOfScope, out[name])
			}
			if want := name == "bob"; u.Disabled != want {
				t.Errorf("ReadUsers %s: Disabled = %v, want %v", name, u.Disabled, want)
			}
			if u.UUID == "" || u.DN == "" {
				t.Errorf("ReadUsers %s: no uuid or DN: %+v", name, u)
			}
			fu, err := l.FindUser(testCtx(t), login)
			if err != nil || fu.OutOfScope != out[name] || fu.DN != u.DN {
				t.Errorf("FindUser %s = OutOfScope %v, DN %q, %v; want %v, %q", name, fu.OutOfScope, fu.DN, err, out[name], u.DN)
			}
		}
		// Check still counts the users in scope only.
		res, err := l.Check(testCtx(t))
		want := len(f.Users)
		for _, o := range out {
			if o {
				want--
			}
		}
		if err != nil || res.Users != want {
			t.Errorf("Check = %+v, %v; want %d users in scope", res, err, want)
		}
	}

	t.Run("outside the filter", func(t *testing.T) {
		check(t, map[string]bool{"bob": true, "star": true})
	})
	t.Run("authenticate finds an out-of-scope user and says so", func(t *testing.T) {
		// The bind succeeds; the login path refuses through the sync rules
		// (the one-user sync skips user_filter: 403) or the store state.
		u, err := l.Authenticate(testCtx(t), star, ldaptest.Password)
		if err != nil || !u.OutOfScope {
			t.Fatalf("Authenticate(%s) = OutOfScope %v, %v; want true, nil", star, u.OutOfScope, err)
		}
		u, err = l.Authenticate(testCtx(t), f.Users["alice"], ldaptest.Password)
		if err != nil || u.OutOfScope {
			t.Fatalf("Authenticate(alice) = OutOfScope %v, %v; want false, nil", u.OutOfScope, err)
		}
	})
	t.Run("back in the filter", func(t *testing.T) {
		s.SetUserAttribute(t, bob, "employeeType", "")
		check(t, map[string]bool{"star": true})
	})
	t.Run("no user_filter: nobody out of scope", func(t *testing.T) {
		cfg := f.Dir
		l2 := openT(t, cfg)
		n := 0
		if err := l2.ReadUsers(testCtx(t), func(u User) error {
			n++
			if u.OutOfScope {
				t.Errorf("%s OutOfScope without a user_filter", u.Username)
			}
			return nil
		}); err != nil || n != len(f.Users) {
			t.Fatalf("ReadUsers: %d users, %v", n, err)
		}
	})
}

// TestSlapdUserFilterUndefined: scope is exactly what the search with
// user_filter returns, also where the filter evaluates to Undefined (an
// attribute type the server does not know). NOT of Undefined is Undefined
// (RFC 4511 §4.5.1.7), so a read deciding scope from the complement,
// (!<user_filter>), would find nobody out of scope here; the in-scope set
// finds nobody in scope, as the plain search with user_filter does.
func TestSlapdUserFilterUndefined(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	cfg := f.Dir
	cfg.UserFilter = "(!(ldapgateNoSuchAttribute=x))"
	l := openT(t, cfg)
	res, err := l.Check(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	in := 0
	n := 0
	if err := l.ReadUsers(testCtx(t), func(u User) error {
		n++
		if !u.OutOfScope {
			in++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(f.Users) || in != res.Users || in != 0 {
		t.Fatalf("ReadUsers: %d users, %d in scope; want %d users, none in scope (the filtered search returns %d)",
			n, in, len(f.Users), res.Users)
	}
	// The complement finds nobody either: deciding scope from it would have
	// let every user in.
	comp, err := s.AdminConn(t).Search(ldap.NewSearchRequest(l.s.usersBase, ldap.ScopeWholeSubtree,
		ldap.NeverDerefAliases, 0, 10, false, "(&"+l.s.userObjectFilter+"(!"+cfg.UserFilter+"))", []string{"1.1"}, nil))
	if err != nil {
		t.Fatalf("complement search: %v", err)
	}
	if len(comp.Entries) != 0 {
		t.Fatalf("complement search: %d entries; want none (Undefined)", len(comp.Entries))
	}
}

// TestFlavorsUserFilter: on every flavour (slapd, Samba AD, 389-ds) the
// in-scope DN set matches the entries of the main read, whatever DN
// spelling each search returns, so exactly the excluded user is OutOfScope.
func TestFlavorsUserFilter(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		f := s.NewFixture(t)
		cfg := f.Dir
		cfg.ApplyDefaults()
		cfg.UserFilter = "(!(" + cfg.UsernameAttribute + "=" + ldap.EscapeFilter(f.Users["bob"]) + "))"
		l := openT(t, cfg)
		got := map[string]bool{}
		if err := l.ReadUsers(testCtx(t), func(u User) error { got[u.Username] = u.OutOfScope; return nil }); err != nil {
			t.Fatal(err)
		}
		for name, login := range f.Users {
			out, ok := got[login]
			if want := name == "bob"; !ok || out != want {
				t.Errorf("ReadUsers %s: read %v, OutOfScope %v; want read, %v", name, ok, out, want)
			}
		}
		for name, want := range map[string]bool{"bob": true, "alice": false} {
			u, err := l.FindUser(testCtx(t), f.Users[name])
			if err != nil || u.OutOfScope != want {
				t.Errorf("FindUser %s = OutOfScope %v, %v; want %v", name, u.OutOfScope, err, want)
			}
		}
	})
}
