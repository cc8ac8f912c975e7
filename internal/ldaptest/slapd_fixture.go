package ldaptest

import (
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

// slapdLayout: ou=<prefix> holding ou=users and ou=groups.
var slapdLayout = fixtureLayout{
	table:                 commonFixture,
	dirType:               config.TypeLDAP,
	root:                  "ou=%s",
	users:                 "ou=users",
	groups:                "ou=groups",
	userRDN:               "uid",
	groupRDN:              "cn",
	starLogin:             "st*r",
	groupNameAttribute:    "cn",
	emptyGroupPlaceholder: true,
}

// slapdOps seeds and changes fixtures on OpenLDAP: inetOrgPerson users,
// groupOfNames groups (member DNs), ppolicy lock for "disabled".
type slapdOps struct{ serverAdmin }

var _ flavorOps = slapdOps{}

func (slapdOps) layout() *fixtureLayout { return &slapdLayout }

func (slapdOps) newFixture(t testing.TB, s *Server) *Fixture {
	t.Helper()
	prefix := fmt.Sprintf("t%d%s", slapdFixtureSeq.Add(1), randomLower(4))
	f := slapdLayout.fixture(s, prefix)
	s.withAdmin(t, func(c *ldap.Conn) error {
		for _, ou := range []struct{ dn, name string }{
			{slapdLayout.rootDN(s, prefix), prefix}, {f.usersDN(), "users"}, {f.groupsDN(), "groups"},
		} {
			if err := addEntry(c, ou.dn, attr("objectClass", "organizationalUnit"), attr("ou", ou.name)); err != nil {
				return err
			}
		}
		if err := f.addTableUsers(c); err != nil {
			return err
		}
		// Groups last: groupOfNames (MUST member) takes its members at creation.
		for _, g := range slapdLayout.table.groups {
			err := addEntry(c, f.Groups[g], attr("objectClass", "groupOfNames"), attr("cn", g),
				attr("member", f.tableMembers(g)...))
			if err != nil {
				return err
			}
		}
		return nil
	})
	return f
}

func (slapdOps) addUserEntry(c *ldap.Conn, f *Fixture, name string, disabled bool) error {
	attrs := append([]ldap.Attribute{attr("objectClass", "inetOrgPerson")}, inetOrgPersonAttrs(f, name)...)
	if disabled {
		attrs = append(attrs, attr("pwdAccountLockedTime", slapdLockedForever))
	}
	return addEntry(c, f.userDN(name), attrs...)
}

func (slapdOps) setDisabled(c *ldap.Conn, dn string, disabled bool) error {
	return setLockAttribute(c, dn, "pwdAccountLockedTime", slapdLockedForever, disabled)
}
