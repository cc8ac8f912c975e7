package ldaptest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// slapdLockedForever is the ppolicy value meaning "locked until an
// administrator removes it" (OpenLDAP 2.5 slapo-ppolicy(5)); SPEC §4 rule 8
// treats the attribute's presence as disabled.
const slapdLockedForever = "000001010000Z"

// slapdFixtureSeq numbers fixtures within a test binary; a random part is
// added because several binaries (packages) may share one long-lived server.
var slapdFixtureSeq atomic.Int64

// slapdOps seeds and changes fixtures on OpenLDAP: inetOrgPerson users,
// groupOfNames groups (member DNs), ppolicy lock for "disabled".
type slapdOps struct{}

var _ flavorOps = slapdOps{}

// fixtureMembers is the common content (see Fixture): group → members, where
// a member is a user's logical name or, for nesting, another group's.
// Order matters: devs exists before staff names it.
var fixtureGroupOrder = []string{"admins", "devs", "staff", "others"}

var fixtureMembers = map[string][]string{
	"admins": {"alice", "frank"},
	"devs":   {"dave"},
	"staff":  {"bob", "carol", "frank", "star", "group:devs"},
	"others": {"erin"},
}

var fixtureUsers = []string{"alice", "bob", "carol", "dave", "erin", "frank", "star"}

func (slapdOps) newFixture(t testing.TB, s *Server) *Fixture {
	t.Helper()
	prefix := fmt.Sprintf("t%d%s", slapdFixtureSeq.Add(1), randomLower(4))
	root := "ou=" + prefix + "," + s.BaseDN
	f := &Fixture{
		Server: s,
		Prefix: prefix,
		Users:  map[string]string{},
		Groups: map[string]string{},
		Dir: config.Directory{
			Name:         prefix,
			Type:         config.TypeLDAP,
			URLs:         []string{s.URL},
			BaseDN:       s.BaseDN,
			BindDN:       s.AdminDN,
			BindPassword: config.Secret(s.AdminPassword),
			UsersDN:      "ou=users,ou=" + prefix,
			GroupsDN:     "ou=groups,ou=" + prefix,
			RoleMapping: map[string][]string{
				"admin": {"cn=admins,ou=groups," + root},
				"user":  {"cn=staff,ou=groups," + root},
			},
			DefaultRole:        "",
			Domain:             "example.com",
			PageSize:           2,
			Naming:             config.NamingUsernameAtDomain,
			GroupNameAttribute: "cn",
		},
	}
	for _, name := range fixtureUsers {
		f.Users[name] = slapdLogin(prefix, name)
	}
	for _, g := range fixtureGroupOrder {
		f.Groups[g] = "cn=" + g + ",ou=groups," + root
	}

	s.withAdmin(t, func(c *ldap.Conn) error {
		for _, ou := range []struct{ dn, name string }{
			{root, prefix}, {"ou=users," + root, "users"}, {"ou=groups," + root, "groups"},
		} {
			req := ldap.NewAddRequest(ou.dn, nil)
			req.Attribute("objectClass", []string{"organizationalUnit"})
			req.Attribute("ou", []string{ou.name})
			if err := c.Add(req); err != nil {
				return fmt.Errorf("add %s: %w", ou.dn, err)
			}
		}
		for _, name := range fixtureUsers {
			if err := slapdAddUserEntry(c, f, name, name == "carol"); err != nil {
				return err
			}
		}
		for _, g := range fixtureGroupOrder {
			var members []string
			for _, m := range fixtureMembers[g] {
				if len(m) > 6 && m[:6] == "group:" {
					members = append(members, f.Groups[m[6:]])
				} else {
					members = append(members, slapdUserDN(f, m))
				}
			}
			req := ldap.NewAddRequest(f.Groups[g], nil)
			req.Attribute("objectClass", []string{"groupOfNames"})
			req.Attribute("cn", []string{g})
			req.Attribute("member", members)
			if err := c.Add(req); err != nil {
				return fmt.Errorf("add group %s: %w", f.Groups[g], err)
			}
		}
		return nil
	})
	return f
}

// slapdLogin is the uid of a logical user; "star" gets a real '*' in its uid
// so filter escaping bugs show (a '*' unescaped matches every user).
func slapdLogin(prefix, name string) string {
	if name == "star" {
		return prefix + "st*r"
	}
	return prefix + name
}

func slapdUserDN(f *Fixture, name string) string {
	uid, ok := f.Users[name]
	if !ok {
		uid = slapdLogin(f.Prefix, name)
	}
	return "uid=" + ldap.EscapeDN(uid) + ",ou=users,ou=" + f.Prefix + "," + f.Server.BaseDN
}

func slapdAddUserEntry(c *ldap.Conn, f *Fixture, name string, disabled bool) error {
	uid := f.Users[name]
	dn := slapdUserDN(f, name)
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"inetOrgPerson"})
	req.Attribute("uid", []string{uid})
	req.Attribute("cn", []string{uid})
	req.Attribute("sn", []string{name})
	req.Attribute("mail", []string{uid + "@example.com"})
	req.Attribute("userPassword", []string{Password})
	if disabled {
		req.Attribute("pwdAccountLockedTime", []string{slapdLockedForever})
	}
	if err := c.Add(req); err != nil {
		return fmt.Errorf("add user %s: %w", dn, err)
	}
	return nil
}

func (slapdOps) addUser(t testing.TB, f *Fixture, name string, groups ...string) {
	t.Helper()
	f.Users[name] = slapdLogin(f.Prefix, name)
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		if err := slapdAddUserEntry(c, f, name, false); err != nil {
			return err
		}
		for _, g := range groups {
			if err := slapdAddMember(c, f, g, slapdUserDN(f, name)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (slapdOps) deleteUser(t testing.TB, f *Fixture, name string) {
	t.Helper()
	dn := slapdUserDN(f, name)
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		// Take the user out of its groups first: memberof-refint would do it,
		// but emptying a groupOfNames (MUST member) needs the placeholder
		// handled in slapdRemoveMember.
		for g := range f.Groups {
			if err := slapdRemoveMember(c, f, g, dn, true); err != nil {
				return err
			}
		}
		if err := c.Del(ldap.NewDelRequest(dn, nil)); err != nil {
			return fmt.Errorf("delete %s: %w", dn, err)
		}
		return nil
	})
}

func (slapdOps) setDisabled(t testing.TB, f *Fixture, name string, disabled bool) {
	t.Helper()
	dn := slapdUserDN(f, name)
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		req := ldap.NewModifyRequest(dn, nil)
		if disabled {
			req.Replace("pwdAccountLockedTime", []string{slapdLockedForever})
		} else {
			req.Delete("pwdAccountLockedTime", nil)
		}
		err := c.Modify(req)
		if !disabled && ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) {
			return nil // already enabled
		}
		if err != nil {
			return fmt.Errorf("set disabled=%v on %s: %w", disabled, dn, err)
		}
		return nil
	})
}

func (slapdOps) addMember(t testing.TB, f *Fixture, group, name string) {
	t.Helper()
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		return slapdAddMember(c, f, group, slapdMemberDN(f, name))
	})
}

func (slapdOps) removeMember(t testing.TB, f *Fixture, group, name string) {
	t.Helper()
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		return slapdRemoveMember(c, f, group, slapdMemberDN(f, name), false)
	})
}

// slapdMemberDN resolves a member name: a fixture user, or else a fixture
// group (so tests can nest groups too).
func slapdMemberDN(f *Fixture, name string) string {
	if _, ok := f.Users[name]; !ok {
		if dn, ok := f.Groups[name]; ok {
			return dn
		}
	}
	return slapdUserDN(f, name)
}

func slapdGroupDN(f *Fixture, group string) (string, error) {
	dn, ok := f.Groups[group]
	if !ok {
		return "", fmt.Errorf("no fixture group %q", group)
	}
	return dn, nil
}

func slapdAddMember(c *ldap.Conn, f *Fixture, group, memberDN string) error {
	gdn, err := slapdGroupDN(f, group)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(gdn, nil)
	req.Add("member", []string{memberDN})
	if err := c.Modify(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultAttributeOrValueExists) {
		return fmt.Errorf("add %s to %s: %w", memberDN, gdn, err)
	}
	// Drop the empty placeholder a previous removal may have left.
	req = ldap.NewModifyRequest(gdn, nil)
	req.Delete("member", []string{""})
	if err := c.Modify(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) {
		return fmt.Errorf("drop placeholder member of %s: %w", gdn, err)
	}
	return nil
}

// slapdRemoveMember deletes memberDN from group. groupOfNames must keep a
// member, so removing the last one swaps in the empty DN (the usual
// OpenLDAP idiom for an empty group) in the same atomic modify.
func slapdRemoveMember(c *ldap.Conn, f *Fixture, group, memberDN string, missingOK bool) error {
	gdn, err := slapdGroupDN(f, group)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(gdn, nil)
	req.Delete("member", []string{memberDN})
	err = c.Modify(req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultObjectClassViolation) {
		req = ldap.NewModifyRequest(gdn, nil)
		req.Add("member", []string{""})
		req.Delete("member", []string{memberDN})
		err = c.Modify(req)
	}
	if missingOK && ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s from %s: %w", memberDN, gdn, err)
	}
	return nil
}

// randomLower returns n random characters from [a-z0-9], valid in a uid
// and an RDN without escaping.
func randomLower(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("ldaptest: crypto/rand failed: " + err.Error()))
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
