// Package ldaptest starts and seeds real directory servers for tests:
// OpenLDAP slapd (a fresh one per test), Samba AD DC and 389 Directory Server
// (one each per test run, started by scripts/test-ldap/*.sh and found through
// environment variables). Every flavour offers the same Fixture: a per-test
// subtree holding the common users and groups, so one table of expectations
// runs against all three (oauth2-proxy's conformance-suite idea).
//
// Without a server a test is skipped, unless LDAPGATE_REQUIRE_REAL_LDAP=1,
// where it fails: CI must never pass by skipping.
package ldaptest

import (
	"fmt"
	"os"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// Flavor names a directory implementation.
type Flavor string

const (
	OpenLDAP Flavor = "openldap"
	Samba    Flavor = "samba"
	DS389    Flavor = "389ds"
)

// Password is every fixture user's password; it satisfies AD complexity.
const Password = "Fixture-Pass1"

// Server is a running real directory.
type Server struct {
	Flavor Flavor
	// URL is ldap://127.0.0.1:PORT (plain, StartTLS capable).
	URL string
	// LDAPSURL is ldaps://127.0.0.1:PORT.
	LDAPSURL string
	// CAFile is the PEM CA that signed the server certificate (IP SAN 127.0.0.1).
	CAFile string
	// BaseDN of the directory, e.g. dc=example,dc=com.
	BaseDN string
	// AdminDN/AdminPassword bind with write access (tests use it as the
	// service account too).
	AdminDN       string
	AdminPassword string
	// Stop ends a per-test server (slapd) abruptly, as a crash would; nil for
	// shared servers. Safe to call twice.
	Stop func()
	// Restart stops a per-test server (slapd) with SIGTERM, as a service
	// restart does, or with SIGKILL when crash, and starts it again on the
	// same ports and data; nil for shared servers.
	Restart func(t testing.TB, crash bool)

	ops flavorOps
}

// Fixture is a per-test subtree with the common directory content:
//
//	groups: admins (mapped to admin), staff (mapped to user),
//	        devs (a member of staff: nesting), others (unmapped)
//	users:  alice  in admins
//	        bob    in staff
//	        carol  in staff, disabled in the directory
//	        dave   in devs (so staff through nesting)
//	        erin   in others only
//	        frank  in admins and staff
//	        star   in staff; its login holds a filter metacharacter ('*', or
//	               "(a)" on AD, which refuses '*'), so escaping bugs show
//
// Every user has Password and mail <username>@example.com.
type Fixture struct {
	Server *Server
	// Prefix makes this fixture's login names unique on shared servers.
	Prefix string
	// Dir is a ready-to-use directory config for this subtree: type, URL,
	// base_dn, bind as admin, users_dn/groups_dn pointing at the subtree,
	// role_mapping admins→admin, staff→user, empty default_role, domain
	// example.com, page_size 2 (so every read pages).
	Dir config.Directory
	// Users maps the logical name ("alice") to the login name in the
	// directory ("t3alice").
	Users map[string]string
	// Groups maps the logical name ("staff") to the group DN.
	Groups map[string]string
}

// commonFixture is the content the Fixture doc describes, seeded by every
// flavour. Groups are listed in creation order: devs before staff, which
// names it (OpenLDAP's groupOfNames takes its members at creation). A member
// is a user's logical name, or "group:<name>" for nesting.
var commonFixture = fixtureTable{
	users:  []string{"alice", "bob", "carol", "dave", "erin", "frank", "star"},
	groups: []string{"admins", "devs", "staff", "others"},
	members: map[string][]string{
		"admins": {"alice", "frank"},
		"devs":   {"dave"},
		"staff":  {"bob", "carol", "frank", "star", "group:devs"},
		"others": {"erin"},
	},
}

// fixtureDisabled is the fixture user seeded disabled in the directory.
const fixtureDisabled = "carol"

// flavorOps is what differs between flavours when seeding and changing
// fixtures; the Fixture methods do the common rest (fixture.go) over LDAP.
type flavorOps interface {
	// layout is where the flavour keeps fixture entries, how it names them
	// and how its groups behave.
	layout() *fixtureLayout
	// newFixture seeds a fresh subtree: containers, object classes and the
	// order entries can be made in differ too much to share more.
	newFixture(t testing.TB, s *Server) *Fixture
	// admin runs fn on an admin connection and fails t on any error.
	admin(t testing.TB, s *Server, fn func(c *ldap.Conn) error)
	// addUserEntry creates the entry of f.Users[name], disabled the
	// flavour's way if asked.
	addUserEntry(c *ldap.Conn, f *Fixture, name string, disabled bool) error
	// setDisabled disables or re-enables the user at dn; either is a no-op
	// when already so.
	setDisabled(c *ldap.Conn, dn string, disabled bool) error
}

// NewFixture seeds a fresh subtree on s for this test.
func (s *Server) NewFixture(t testing.TB) *Fixture { t.Helper(); return s.ops.newFixture(t, s) }

// AddUser creates user name (logical; prefixed like the others) in groups.
func (f *Fixture) AddUser(t testing.TB, name string, groups ...string) {
	t.Helper()
	ops := f.Server.ops
	f.Users[name] = ops.layout().login(f.Prefix, name)
	ops.admin(t, f.Server, func(c *ldap.Conn) error {
		if err := ops.addUserEntry(c, f, name, false); err != nil {
			return err
		}
		for _, g := range groups {
			if err := f.addMember(c, g, f.userDN(name)); err != nil {
				return err
			}
		}
		return nil
	})
}

// AddUsers creates many users (in no group) over one connection.
func (f *Fixture) AddUsers(t testing.TB, names ...string) {
	t.Helper()
	ops := f.Server.ops
	for _, name := range names {
		f.Users[name] = ops.layout().login(f.Prefix, name)
	}
	ops.admin(t, f.Server, func(c *ldap.Conn) error {
		for _, name := range names {
			if err := ops.addUserEntry(c, f, name, false); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteUser removes the user's entry.
func (f *Fixture) DeleteUser(t testing.TB, name string) {
	t.Helper()
	dn := f.userDN(name)
	f.Server.ops.admin(t, f.Server, func(c *ldap.Conn) error {
		if !f.layout().serverUnlinksMembers {
			for g := range f.Groups {
				if err := f.removeMember(c, g, dn, true); err != nil {
					return err
				}
			}
		}
		if err := c.Del(ldap.NewDelRequest(dn, nil)); err != nil {
			return fmt.Errorf("delete %s: %w", dn, err)
		}
		return nil
	})
}

// SetDisabled disables or re-enables the user the flavour's way.
func (f *Fixture) SetDisabled(t testing.TB, name string, disabled bool) {
	t.Helper()
	dn := f.userDN(name)
	f.Server.ops.admin(t, f.Server, func(c *ldap.Conn) error { return f.Server.ops.setDisabled(c, dn, disabled) })
}

// AddMember puts user name (or, to nest groups, a fixture group) into group.
func (f *Fixture) AddMember(t testing.TB, group, name string) {
	t.Helper()
	f.Server.ops.admin(t, f.Server, func(c *ldap.Conn) error { return f.addMember(c, group, f.memberDN(name)) })
}

// RemoveMember takes user name (or a fixture group) out of group.
func (f *Fixture) RemoveMember(t testing.TB, group, name string) {
	t.Helper()
	f.Server.ops.admin(t, f.Server, func(c *ldap.Conn) error { return f.removeMember(c, group, f.memberDN(name), false) })
}

// Login returns the canonical login name of a logical fixture user.
func (f *Fixture) Login(name string) string { return f.Users[name] + "@example.com" }

// RequireReal reports whether a missing server must fail the test.
func RequireReal() bool { return os.Getenv("LDAPGATE_REQUIRE_REAL_LDAP") == "1" }

// Missing skips the test, or fails it under LDAPGATE_REQUIRE_REAL_LDAP=1.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireReal() {
		t.Fatalf("real directory required (LDAPGATE_REQUIRE_REAL_LDAP=1): "+format, args...)
	}
	t.Skipf("no real directory: "+format, args...)
}

// Each runs fn as a subtest against every flavour's server (a fresh slapd,
// the shared Samba and 389-ds), for suites with one table of expectations.
func Each(t *testing.T, fn func(t *testing.T, s *Server)) {
	t.Helper()
	for _, start := range []struct {
		flavor Flavor
		get    func(testing.TB) *Server
	}{{OpenLDAP, StartSlapd}, {Samba, SharedSamba}, {DS389, Shared389}} {
		t.Run(string(start.flavor), func(t *testing.T) { fn(t, start.get(t)) })
	}
}
