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

// ds389Ops seeds and changes fixtures on 389 Directory Server the way
// FreeIPA lays them out: a per-fixture container cn=<prefix>,cn=accounts with
// cn=users and cn=groups inside, users as inetOrgPerson + ipaObject (with an
// ipaUniqueID), groups as groupOfNames, nsAccountLock: TRUE for "disabled".
// memberOf is kept by the server's MemberOf plugin, nesting included.
type ds389Ops struct{}

var _ flavorOps = ds389Ops{}

// The common fixture content (see Fixture): group → members, a member being
// a user's logical name or "group:<name>" for nesting. devs comes before
// staff, which names it. 389-ds's groupOfNames has MAY member, so groups may
// be empty, unlike OpenLDAP's.
var (
	ds389GroupOrder = []string{"admins", "devs", "staff", "others"}
	ds389Members    = map[string][]string{
		"admins": {"alice", "frank"},
		"devs":   {"dave"},
		"staff":  {"bob", "carol", "frank", "star", "group:devs"},
		"others": {"erin"},
	}
	ds389Users = []string{"alice", "bob", "carol", "dave", "erin", "frank", "star"}
)

// ds389Locked is the value FreeIPA writes for a disabled user; 389-ds treats
// it case-insensitively and refuses the bind with result 53.
const ds389Locked = "TRUE"

func (ds389Ops) newFixture(t testing.TB, s *Server) *Fixture {
	t.Helper()
	// Shared server: several test binaries seed fixtures at once, so the
	// prefix is random rather than a per-process counter.
	prefix := "t" + ds389Random(7)
	root := "cn=" + prefix + ",cn=accounts," + s.BaseDN
	f := &Fixture{
		Server: s,
		Prefix: prefix,
		Users:  map[string]string{},
		Groups: map[string]string{},
		Dir: config.Directory{
			Name:         prefix,
			Type:         config.TypeFreeIPA,
			URLs:         []string{s.URL},
			BaseDN:       s.BaseDN,
			BindDN:       s.AdminDN,
			BindPassword: config.Secret(s.AdminPassword),
			UsersDN:      "cn=users,cn=" + prefix + ",cn=accounts",
			GroupsDN:     "cn=groups,cn=" + prefix + ",cn=accounts",
			RoleMapping: map[string][]string{
				"admin": {"cn=admins,cn=groups," + root},
				"user":  {"cn=staff,cn=groups," + root},
			},
			DefaultRole:        "",
			Domain:             "example.com",
			PageSize:           2,
			Naming:             config.NamingUsernameAtDomain,
			GroupNameAttribute: "memberOf",
		},
	}
	for _, name := range ds389Users {
		f.Users[name] = ds389Login(prefix, name)
	}
	for _, g := range ds389GroupOrder {
		f.Groups[g] = "cn=" + g + ",cn=groups," + root
	}

	s.withAdmin(t, func(c *ldap.Conn) error {
		for _, ct := range []struct{ dn, name string }{
			{root, prefix}, {"cn=users," + root, "users"}, {"cn=groups," + root, "groups"},
		} {
			req := ldap.NewAddRequest(ct.dn, nil)
			req.Attribute("objectClass", []string{"top", "nsContainer"})
			req.Attribute("cn", []string{ct.name})
			if err := c.Add(req); err != nil {
				return fmt.Errorf("add %s: %w", ct.dn, err)
			}
		}
		for _, name := range ds389Users {
			if err := ds389AddUserEntry(c, f, name, name == "carol"); err != nil {
				return err
			}
		}
		for _, g := range ds389GroupOrder {
			var members []string
			for _, m := range ds389Members[g] {
				if sub, ok := strings.CutPrefix(m, "group:"); ok {
					members = append(members, f.Groups[sub])
				} else {
					members = append(members, ds389UserDN(f, m))
				}
			}
			req := ldap.NewAddRequest(f.Groups[g], nil)
			// FreeIPA groups are ipaObjects too (nestedGroup/ipaUserGroup are
			// FreeIPA schema this server does not carry; groupOfNames is what
			// the MemberOf plugin and ldapgate read).
			req.Attribute("objectClass", []string{"top", "groupOfNames", "ipaObject"})
			req.Attribute("cn", []string{g})
			req.Attribute("ipaUniqueID", []string{ds389UUID()})
			req.Attribute("member", members)
			if err := c.Add(req); err != nil {
				return fmt.Errorf("add group %s: %w", f.Groups[g], err)
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

// ds389Login is the uid of a logical user; "star" gets a real '*' in its uid
// so filter escaping bugs show (a '*' unescaped matches every user).
func ds389Login(prefix, name string) string {
	if name == "star" {
		return prefix + "st*r"
	}
	return prefix + name
}

func ds389UserDN(f *Fixture, name string) string {
	uid, ok := f.Users[name]
	if !ok {
		uid = ds389Login(f.Prefix, name)
	}
	return "uid=" + ldap.EscapeDN(uid) + "," + f.Dir.UsersDN + "," + f.Server.BaseDN
}

func ds389AddUserEntry(c *ldap.Conn, f *Fixture, name string, disabled bool) error {
	uid := f.Users[name]
	dn := ds389UserDN(f, name)
	req := ldap.NewAddRequest(dn, nil)
	req.Attribute("objectClass", []string{"top", "person", "organizationalPerson", "inetOrgPerson", "ipaObject"})
	req.Attribute("uid", []string{uid})
	req.Attribute("cn", []string{uid})
	req.Attribute("sn", []string{name})
	req.Attribute("mail", []string{uid + "@example.com"})
	req.Attribute("userPassword", []string{Password})
	req.Attribute("ipaUniqueID", []string{ds389UUID()})
	if disabled {
		req.Attribute("nsAccountLock", []string{ds389Locked})
	}
	if err := c.Add(req); err != nil {
		return fmt.Errorf("add user %s: %w", dn, err)
	}
	return nil
}

func (ds389Ops) addUser(t testing.TB, f *Fixture, name string, groups ...string) {
	t.Helper()
	f.Users[name] = ds389Login(f.Prefix, name)
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		if err := ds389AddUserEntry(c, f, name, false); err != nil {
			return err
		}
		for _, g := range groups {
			if err := ds389AddMember(c, f, g, ds389UserDN(f, name)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (ds389Ops) deleteUser(t testing.TB, f *Fixture, name string) {
	t.Helper()
	dn := ds389UserDN(f, name)
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		// No referential-integrity plugin here (FreeIPA has one): take the
		// user out of its groups so no dangling member values remain.
		for g := range f.Groups {
			if err := ds389RemoveMember(c, f, g, dn, true); err != nil {
				return err
			}
		}
		if err := c.Del(ldap.NewDelRequest(dn, nil)); err != nil {
			return fmt.Errorf("delete %s: %w", dn, err)
		}
		return nil
	})
}

func (ds389Ops) setDisabled(t testing.TB, f *Fixture, name string, disabled bool) {
	t.Helper()
	dn := ds389UserDN(f, name)
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		req := ldap.NewModifyRequest(dn, nil)
		if disabled {
			req.Replace("nsAccountLock", []string{ds389Locked})
		} else {
			req.Delete("nsAccountLock", nil)
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

func (ds389Ops) addMember(t testing.TB, f *Fixture, group, name string) {
	t.Helper()
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		return ds389AddMember(c, f, group, ds389MemberDN(f, name))
	})
}

func (ds389Ops) removeMember(t testing.TB, f *Fixture, group, name string) {
	t.Helper()
	f.Server.withAdmin(t, func(c *ldap.Conn) error {
		return ds389RemoveMember(c, f, group, ds389MemberDN(f, name), false)
	})
}

// ds389MemberDN resolves a member name: a fixture user, or else a fixture
// group (so tests can nest groups too).
func ds389MemberDN(f *Fixture, name string) string {
	if _, ok := f.Users[name]; !ok {
		if dn, ok := f.Groups[name]; ok {
			return dn
		}
	}
	return ds389UserDN(f, name)
}

func ds389GroupDN(f *Fixture, group string) (string, error) {
	dn, ok := f.Groups[group]
	if !ok {
		return "", fmt.Errorf("no fixture group %q", group)
	}
	return dn, nil
}

func ds389AddMember(c *ldap.Conn, f *Fixture, group, memberDN string) error {
	gdn, err := ds389GroupDN(f, group)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(gdn, nil)
	req.Add("member", []string{memberDN})
	if err := c.Modify(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultAttributeOrValueExists) {
		return fmt.Errorf("add %s to %s: %w", memberDN, gdn, err)
	}
	return nil
}

func ds389RemoveMember(c *ldap.Conn, f *Fixture, group, memberDN string, missingOK bool) error {
	gdn, err := ds389GroupDN(f, group)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(gdn, nil)
	req.Delete("member", []string{memberDN})
	err = c.Modify(req)
	if missingOK && ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s from %s: %w", memberDN, gdn, err)
	}
	return nil
}

// ds389Random returns n random characters from [a-z0-9] (base36), valid in
// a uid and an RDN without escaping.
func ds389Random(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead since Go 1.24)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// ds389UUID is a random (version 4) UUID in FreeIPA's lower-case form.
func ds389UUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
