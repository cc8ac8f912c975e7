package ldaptest

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// ds389Layout is FreeIPA's: a per-fixture container cn=<prefix>,cn=accounts
// with cn=users and cn=groups inside. 389-ds's groupOfNames has MAY member,
// so groups may be empty, unlike OpenLDAP's.
var ds389Layout = fixtureLayout{
	table:              commonFixture,
	dirType:            config.TypeFreeIPA,
	root:               "cn=%s,cn=accounts",
	users:              "cn=users",
	groups:             "cn=groups",
	userRDN:            "uid",
	groupRDN:           "cn",
	starLogin:          "st*r",
	groupNameAttribute: "memberOf",
}

// ds389Ops seeds and changes fixtures on 389 Directory Server the way
// FreeIPA lays them out (ds389Layout): users as inetOrgPerson + ipaObject
// (with an ipaUniqueID), groups as groupOfNames, nsAccountLock: TRUE for
// "disabled". memberOf is kept by the server's MemberOf plugin, nesting
// included.
type ds389Ops struct{ serverAdmin }

var _ flavorOps = ds389Ops{}

// ds389Locked is the value FreeIPA writes for a disabled user; 389-ds treats
// it case-insensitively and refuses the bind with result 53.
const ds389Locked = "TRUE"

func (ds389Ops) layout() *fixtureLayout { return &ds389Layout }

func (ds389Ops) newFixture(t testing.TB, s *Server) *Fixture {
	t.Helper()
	// Shared server: several test binaries seed fixtures at once, so the
	// prefix is random rather than a per-process counter.
	prefix := "t" + randomLower(7)
	root := ds389Layout.rootDN(s, prefix)
	f := ds389Layout.fixture(s, prefix)
	s.withAdmin(t, func(c *ldap.Conn) error {
		for _, ct := range []struct{ dn, name string }{
			{root, prefix}, {f.usersDN(), "users"}, {f.groupsDN(), "groups"},
		} {
			attrs := []ldap.Attribute{attr("objectClass", "top", "nsContainer"), attr("cn", ct.name)}
			if ct.dn == root {
				// FreeIPA's "Self can write own password" ACI, so users
				// change their own password as on FreeIPA (SPEC §13).
				attrs = append(attrs, attr("aci", `(targetattr = "userPassword")(version 3.0; acl "ldapgate test: self can write own password"; allow (write) userdn = "ldap:///self";)`))
			}
			if err := addEntry(c, ct.dn, attrs...); err != nil {
				return err
			}
		}
		if err := f.addTableUsers(c); err != nil {
			return err
		}
		for _, g := range ds389Layout.table.groups {
			// FreeIPA groups are ipaObjects too (nestedGroup/ipaUserGroup are
			// FreeIPA schema this server does not carry; groupOfNames is what
			// the MemberOf plugin and ldapgate read).
			err := addEntry(c, f.Groups[g], attr("objectClass", "top", "groupOfNames", "ipaObject"),
				attr("cn", g), attr("ipaUniqueID", ds389UUID()), attr("member", f.tableMembers(g)...))
			if err != nil {
				return err
			}
		}
		return nil
	})
	t.Cleanup(func() { ds389DeleteTree(t, s, root) })
	return f
}

// ds389DeleteTree removes a fixture's subtree so the shared server does not
// grow with every test; failures are logged only, as the test is over.
func ds389DeleteTree(t testing.TB, s *Server, root string) {
	c, err := s.dialAdmin()
	if err != nil {
		t.Logf("ldaptest: cleanup of %s: %v", root, err)
		return
	}
	defer c.Close()
	res, err := c.Search(ldap.NewSearchRequest(root, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 30, false, "(objectClass=*)", []string{"1.1"}, nil))
	if err != nil {
		t.Logf("ldaptest: cleanup of %s: %v", root, err)
		return
	}
	// Deepest first: a DN with more RDNs is below one with fewer.
	depth := func(dn string) int {
		d, err := ldap.ParseDN(dn)
		if err != nil {
			return strings.Count(dn, ",")
		}
		return len(d.RDNs)
	}
	dns := make([]string, 0, len(res.Entries))
	for _, e := range res.Entries {
		dns = append(dns, e.DN)
	}
	slices.SortFunc(dns, func(a, b string) int { return depth(b) - depth(a) })
	for _, dn := range dns {
		if err := c.Del(ldap.NewDelRequest(dn, nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			t.Logf("ldaptest: cleanup: delete %s: %v", dn, err)
		}
	}
}

func (ds389Ops) addUserEntry(c *ldap.Conn, f *Fixture, name string, disabled bool) error {
	attrs := append([]ldap.Attribute{
		attr("objectClass", "top", "person", "organizationalPerson", "inetOrgPerson", "ipaObject"),
		attr("ipaUniqueID", ds389UUID()),
	}, inetOrgPersonAttrs(f, name)...)
	if disabled {
		attrs = append(attrs, attr("nsAccountLock", ds389Locked))
	}
	return addEntry(c, f.userDN(name), attrs...)
}

func (ds389Ops) setDisabled(c *ldap.Conn, dn string, disabled bool) error {
	return setLockAttribute(c, dn, "nsAccountLock", ds389Locked, disabled)
}

// ds389UUID is a random (version 4) UUID in FreeIPA's lower-case form.
func ds389UUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
