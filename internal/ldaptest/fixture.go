package ldaptest

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// fixtureTable is a fixture's content: users and groups in creation order,
// group → members (see commonFixture).
type fixtureTable struct {
	users   []string
	groups  []string
	members map[string][]string
}

// with returns ft plus a flavour's own users, groups and members (appended
// to a group's common ones); ft itself is left unchanged.
func (ft fixtureTable) with(users, groups []string, members map[string][]string) fixtureTable {
	m := make(map[string][]string, len(ft.members)+len(members))
	for g, v := range ft.members {
		m[g] = slices.Clone(v)
	}
	for g, v := range members {
		m[g] = append(m[g], v...)
	}
	return fixtureTable{users: slices.Concat(ft.users, users), groups: slices.Concat(ft.groups, groups), members: m}
}

// fixtureLayout is where a flavour keeps a fixture's entries, how it names
// them and how its groups behave: what the shared LDAP edits below need.
// DN parts keep the flavour's case, as tests compare DNs as strings.
type fixtureLayout struct {
	table   fixtureTable
	dirType string // config.Type*
	// root is the fixture's subtree relative to the base, %s the prefix;
	// users and groups are the containers inside it.
	root, users, groups string
	// userRDN and groupRDN name the attribute of an entry's RDN.
	userRDN, groupRDN string
	// starLogin is the "star" user's login after the prefix.
	starLogin          string
	groupNameAttribute string
	// dirTrustsCA puts the server's CA in Dir, as BigSambaDirectory does, so
	// a test can switch an AD fixture to LDAPSURL or StartTLS alone.
	dirTrustsCA bool
	// emptyGroupPlaceholder: OpenLDAP's groupOfNames has MUST member, so an
	// emptied group keeps the empty DN (the usual OpenLDAP idiom for "no
	// members"), dropped again when a real member comes.
	emptyGroupPlaceholder bool
	// serverUnlinksMembers: AD drops a deleted user from every group itself
	// (linked attributes) and refuses removing a non-member (53), so
	// DeleteUser must not. Elsewhere DeleteUser takes the user out first so
	// no dangling member values remain: 389-ds runs no referential-integrity
	// plugin here (FreeIPA does), and OpenLDAP's memberof refint would not
	// leave the placeholder in a group it empties.
	serverUnlinksMembers bool
}

// login is the login name of a logical user in a fixture with prefix.
func (l *fixtureLayout) login(prefix, name string) string {
	if name == "star" {
		return prefix + l.starLogin
	}
	return prefix + name
}

// rootDN is the absolute DN of the subtree of the fixture with prefix.
func (l *fixtureLayout) rootDN(s *Server, prefix string) string {
	return fmt.Sprintf(l.root, prefix) + "," + s.BaseDN
}

// fixture is the Fixture value for prefix on s, before any entry exists:
// Dir pointing at its subtree, Users and Groups filled from the table.
func (l *fixtureLayout) fixture(s *Server, prefix string) *Fixture {
	root := fmt.Sprintf(l.root, prefix)
	f := &Fixture{
		Server: s,
		Prefix: prefix,
		Users:  map[string]string{},
		Groups: map[string]string{},
		Dir: config.Directory{
			Name:               prefix,
			Type:               l.dirType,
			URLs:               []string{s.URL},
			BaseDN:             s.BaseDN,
			BindDN:             s.AdminDN,
			BindPassword:       config.Secret(s.AdminPassword),
			UsersDN:            l.users + "," + root,
			GroupsDN:           l.groups + "," + root,
			DefaultRole:        "",
			Domain:             "example.com",
			PageSize:           2,
			Naming:             config.NamingUsernameAtDomain,
			GroupNameAttribute: l.groupNameAttribute,
		},
	}
	if l.dirTrustsCA {
		f.Dir.TLS = config.TLS{CAFile: s.CAFile}
	}
	for _, name := range l.table.users {
		f.Users[name] = l.login(prefix, name)
	}
	for _, g := range l.table.groups {
		f.Groups[g] = l.groupRDN + "=" + g + "," + f.groupsDN()
	}
	f.Dir.RoleMapping = map[string][]string{"admin": {f.Groups["admins"]}, "user": {f.Groups["staff"]}}
	return f
}

func (f *Fixture) layout() *fixtureLayout { return f.Server.ops.layout() }

// usersDN and groupsDN are the absolute DNs of the fixture's containers.
func (f *Fixture) usersDN() string  { return f.Dir.UsersDN + "," + f.Server.BaseDN }
func (f *Fixture) groupsDN() string { return f.Dir.GroupsDN + "," + f.Server.BaseDN }

// userDN is the DN of a logical user, also one not (or no longer) in Users.
func (f *Fixture) userDN(name string) string {
	login, ok := f.Users[name]
	if !ok {
		login = f.layout().login(f.Prefix, name)
	}
	return f.layout().userRDN + "=" + ldap.EscapeDN(login) + "," + f.usersDN()
}

// memberDN resolves a member: "group:<name>", or a fixture group's name not
// used by a user, gives the group's DN (so tests can nest groups too);
// anything else a user's.
func (f *Fixture) memberDN(m string) string {
	if g, ok := strings.CutPrefix(m, "group:"); ok {
		return f.Groups[g]
	}
	if _, isUser := f.Users[m]; !isUser {
		if dn, isGroup := f.Groups[m]; isGroup {
			return dn
		}
	}
	return f.userDN(m)
}

// tableMembers are the DNs of group's members in the flavour's table.
func (f *Fixture) tableMembers(group string) []string {
	var dns []string
	for _, m := range f.layout().table.members[group] {
		dns = append(dns, f.memberDN(m))
	}
	return dns
}

// addTableUsers creates every user of the flavour's table, fixtureDisabled
// disabled.
func (f *Fixture) addTableUsers(c *ldap.Conn) error {
	for _, name := range f.layout().table.users {
		if err := f.Server.ops.addUserEntry(c, f, name, name == fixtureDisabled); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fixture) groupDN(group string) (string, error) {
	dn, ok := f.Groups[group]
	if !ok {
		return "", fmt.Errorf("no fixture group %q", group)
	}
	return dn, nil
}

// addMember adds memberDN to group. Already a member is fine where the
// server answers 20; AD answers 68, which still fails.
func (f *Fixture) addMember(c *ldap.Conn, group, memberDN string) error {
	gdn, err := f.groupDN(group)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(gdn, nil)
	req.Add("member", []string{memberDN})
	if err := c.Modify(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultAttributeOrValueExists) {
		return fmt.Errorf("add %s to %s: %w", memberDN, gdn, err)
	}
	if !f.layout().emptyGroupPlaceholder {
		return nil
	}
	// Drop the empty placeholder a previous removal may have left.
	req = ldap.NewModifyRequest(gdn, nil)
	req.Delete("member", []string{""})
	if err := c.Modify(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) {
		return fmt.Errorf("drop placeholder member of %s: %w", gdn, err)
	}
	return nil
}

// removeMember deletes memberDN from group; with missingOK a non-member is
// fine. Where groups need a member, removing the last one swaps in the empty
// DN in the same atomic modify.
func (f *Fixture) removeMember(c *ldap.Conn, group, memberDN string, missingOK bool) error {
	gdn, err := f.groupDN(group)
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(gdn, nil)
	req.Delete("member", []string{memberDN})
	err = c.Modify(req)
	if f.layout().emptyGroupPlaceholder && ldap.IsErrorWithCode(err, ldap.LDAPResultObjectClassViolation) {
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

// setLockAttribute disables the user at dn by writing lockAttr: value, or
// re-enables them by removing it, for flavours where an attribute's
// presence is the lock (OpenLDAP's ppolicy, 389-ds's nsAccountLock).
func setLockAttribute(c *ldap.Conn, dn, lockAttr, value string, disabled bool) error {
	req := ldap.NewModifyRequest(dn, nil)
	if disabled {
		req.Replace(lockAttr, []string{value})
	} else {
		req.Delete(lockAttr, nil)
	}
	err := c.Modify(req)
	if !disabled && ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) {
		return nil // already enabled
	}
	if err != nil {
		return fmt.Errorf("set disabled=%v on %s: %w", disabled, dn, err)
	}
	return nil
}

// inetOrgPersonAttrs are the attributes of a fixture user that OpenLDAP and
// 389-ds share; the flavour adds object classes and its lock.
func inetOrgPersonAttrs(f *Fixture, name string) []ldap.Attribute {
	uid := f.Users[name]
	return []ldap.Attribute{
		attr("uid", uid), attr("cn", uid), attr("sn", name),
		attr("mail", uid+"@example.com"), attr("userPassword", Password),
	}
}

// addEntry adds dn with attrs.
func addEntry(c *ldap.Conn, dn string, attrs ...ldap.Attribute) error {
	if err := c.Add(&ldap.AddRequest{DN: dn, Attributes: attrs}); err != nil {
		return fmt.Errorf("add %s: %w", dn, err)
	}
	return nil
}

func attr(typ string, vals ...string) ldap.Attribute { return ldap.Attribute{Type: typ, Vals: vals} }

// randomLower returns n random characters from [a-z0-9], valid in a uid,
// a sAMAccountName and an RDN without escaping.
func randomLower(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: since Go 1.24 crypto/rand crashes the program instead
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
