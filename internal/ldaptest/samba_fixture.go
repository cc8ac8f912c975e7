package ldaptest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"unicode/utf16"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// Active Directory's userAccountControl flags and group type the fixtures use.
const (
	sambaUACAccountDisable = 0x2
	sambaUACNormalAccount  = 0x200
	// sambaGlobalSecurityGroup is groupType GLOBAL_GROUP|SECURITY_ENABLED as
	// the signed 32-bit value AD stores.
	sambaGlobalSecurityGroup = "-2147483646"
	// sambaDomainUsersRID is the well-known RID of Domain Users, every new
	// user's primary group and a member of CN=Users,CN=Builtin (SPEC rule 2).
	sambaDomainUsersRID = 513
)

// sambaLayout holds the common fixture content (see Fixture) plus two
// AD-only users:
//
//   - outsider: a member of staff (mapped to user) whose primary group is
//     outgrp and who was taken out of Domain Users, so no path — direct,
//     nested or primary group — leads to CN=Users,CN=Builtin. It proves rule
//     2: a mapped group alone does not put an AD user in scope
//     (out_of_scope, not active).
//   - primary: a user whose primary group is staff itself. AD never lists the
//     primary group in memberOf (nor the user in staff's member), so the role
//     "user" is found only by resolving primaryGroupID against staff's
//     objectSid RID. Samba made the old primary group, Domain Users, an
//     explicit membership when the primary group changed, so primary stays
//     in scope through a direct Domain Users → Builtin\Users path.
//
// Every other user keeps primaryGroupID 513 (Domain Users) and is in no
// group leading to Builtin\Users by memberOf: they are in scope through
// their primary group only, the common case rule 2 must get right.
//
// star: AD refuses '*' in sAMAccountName, so the Samba star carries "(a)"
// instead; unescaped parentheses break a filter as surely as '*' widens one.
var sambaLayout = fixtureLayout{
	table: commonFixture.with([]string{"outsider", "primary"}, []string{"outgrp"}, map[string][]string{
		"staff":  {"outsider", "primary"},
		"outgrp": {"outsider"},
	}),
	dirType:              config.TypeActiveDirectory,
	root:                 "OU=%s",
	users:                "OU=users",
	groups:               "OU=groups",
	userRDN:              "CN",
	groupRDN:             "CN",
	starLogin:            "st(a)r",
	groupNameAttribute:   "memberOf",
	dirTrustsCA:          true,
	serverUnlinksMembers: true,
}

// sambaPrimaryGroup: user → the fixture group made its primary group.
var sambaPrimaryGroup = map[string]string{"outsider": "outgrp", "primary": "staff"}

func (o *sambaOps) layout() *fixtureLayout { return &sambaLayout }

// admin writes over Samba's own LDAPS port (see sambaOps), not s.URL.
func (o *sambaOps) admin(t testing.TB, _ *Server, fn func(c *ldap.Conn) error) {
	t.Helper()
	o.with(t, fn)
}

func (o *sambaOps) newFixture(t testing.TB, s *Server) *Fixture {
	t.Helper()
	var f *Fixture
	o.with(t, func(c *ldap.Conn) error {
		// Shared server: several test binaries seed at once, so the prefix is
		// random. Short, because sAMAccountName holds at most 20 characters.
		for attempt := 0; ; attempt++ {
			prefix := "t" + randomLower(4)
			err := addEntry(c, sambaLayout.rootDN(s, prefix), attr("objectClass", "organizationalUnit"))
			if ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) && attempt < 5 {
				continue
			}
			if err != nil {
				return err
			}
			f = sambaLayout.fixture(s, prefix)
			break
		}
		for _, ou := range []string{f.usersDN(), f.groupsDN()} {
			if err := addEntry(c, ou, attr("objectClass", "organizationalUnit")); err != nil {
				return err
			}
		}
		// Members last: AD links only entries that exist, and its groups
		// may be empty.
		for _, g := range sambaLayout.table.groups {
			err := addEntry(c, f.Groups[g], attr("objectClass", "group"),
				attr("sAMAccountName", f.Prefix+g), attr("groupType", sambaGlobalSecurityGroup))
			if err != nil {
				return err
			}
		}
		if err := f.addTableUsers(c); err != nil {
			return err
		}
		for _, g := range sambaLayout.table.groups {
			req := ldap.NewModifyRequest(f.Groups[g], nil)
			req.Add("member", f.tableMembers(g))
			if err := c.Modify(req); err != nil {
				return fmt.Errorf("add members to %s: %w", f.Groups[g], err)
			}
		}
		for _, name := range []string{"outsider", "primary"} {
			if err := sambaSetPrimaryGroup(c, f, name, sambaPrimaryGroup[name]); err != nil {
				return err
			}
		}
		// outsider leaves Domain Users, which Samba made an explicit
		// membership when its primary group changed.
		du := "CN=Domain Users,CN=Users," + s.BaseDN
		req := ldap.NewModifyRequest(du, nil)
		req.Delete("member", []string{f.userDN("outsider")})
		if err := c.Modify(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchAttribute) &&
			!ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
			return fmt.Errorf("remove outsider from %s: %w", du, err)
		}
		return nil
	})
	return f
}

// sambaUnicodePwd is AD's password attribute value: the password in double
// quotes, UTF-16LE (MS-ADTS 3.1.1.3.1.5).
func sambaUnicodePwd(pw string) string {
	u := utf16.Encode([]rune(`"` + pw + `"`))
	b := make([]byte, 2*len(u))
	for i, r := range u {
		binary.LittleEndian.PutUint16(b[2*i:], r)
	}
	return string(b)
}

func (o *sambaOps) addUserEntry(c *ldap.Conn, f *Fixture, name string, disabled bool) error {
	sam := f.Users[name]
	uac := sambaUACNormalAccount
	if disabled {
		uac |= sambaUACAccountDisable
	}
	return addEntry(c, f.userDN(name),
		attr("objectClass", "user"),
		attr("sAMAccountName", sam),
		attr("userPrincipalName", sam+"@example.com"),
		attr("mail", sam+"@example.com"),
		attr("displayName", sam),
		attr("sn", name),
		attr("unicodePwd", sambaUnicodePwd(Password)),
		attr("userAccountControl", strconv.Itoa(uac)))
}

// sambaSetPrimaryGroup makes group the user's primary group; AD requires the
// user to be a member of it already.
func sambaSetPrimaryGroup(c *ldap.Conn, f *Fixture, name, group string) error {
	rid, err := sambaRID(c, f.Groups[group])
	if err != nil {
		return err
	}
	req := ldap.NewModifyRequest(f.userDN(name), nil)
	req.Replace("primaryGroupID", []string{strconv.FormatUint(uint64(rid), 10)})
	if err := c.Modify(req); err != nil {
		return fmt.Errorf("set primary group of %s to %s: %w", name, group, err)
	}
	return nil
}

// sambaRID reads an entry's objectSid and returns its last sub-authority.
func sambaRID(c *ldap.Conn, dn string) (uint32, error) {
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"objectSid"}, nil))
	if err != nil {
		return 0, fmt.Errorf("read objectSid of %s: %w", dn, err)
	}
	if len(res.Entries) != 1 {
		return 0, fmt.Errorf("read objectSid of %s: %d entries", dn, len(res.Entries))
	}
	return SambaSIDRID(res.Entries[0].GetRawAttributeValue("objectSid"))
}

// SambaSIDRID returns the RID (last sub-authority) of a binary SID as AD
// sends objectSid: revision, count, 6-byte authority, count little-endian
// uint32 sub-authorities.
func SambaSIDRID(sid []byte) (uint32, error) {
	if len(sid) < 8 || len(sid) != 8+4*int(sid[1]) || sid[1] == 0 {
		return 0, errors.New("malformed objectSid")
	}
	return binary.LittleEndian.Uint32(sid[len(sid)-4:]), nil
}

// setDisabled flips ACCOUNTDISABLE and keeps the other flags of
// userAccountControl.
func (o *sambaOps) setDisabled(c *ldap.Conn, dn string, disabled bool) error {
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"userAccountControl"}, nil))
	if err != nil {
		return fmt.Errorf("read userAccountControl of %s: %w", dn, err)
	}
	if len(res.Entries) != 1 {
		return fmt.Errorf("read userAccountControl of %s: %d entries", dn, len(res.Entries))
	}
	uac, err := strconv.ParseInt(res.Entries[0].GetAttributeValue("userAccountControl"), 10, 64)
	if err != nil {
		return fmt.Errorf("userAccountControl of %s: %w", dn, err)
	}
	if disabled {
		uac |= sambaUACAccountDisable
	} else {
		uac &^= sambaUACAccountDisable
	}
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace("userAccountControl", []string{strconv.FormatInt(uac, 10)})
	if err := c.Modify(req); err != nil {
		return fmt.Errorf("set userAccountControl of %s: %w", dn, err)
	}
	return nil
}

// SambaSetLocked locks a Samba fixture user out the way AD does — failed
// binds beyond the lockout threshold set lockoutTime — or unlocks them
// (lockoutTime 0, the one value AD lets an administrator write). A locked
// user's bind fails with 49 and "data 775" even with the right password,
// while userAccountControl keeps the account enabled: a lockout is
// temporary and must not count as disabled in the directory.
//
// The domain's own policy has no lockout (tests type wrong passwords on
// purpose), so locking first gives this one user a fine-grained password
// policy (PSO) with a threshold of one failed bind.
func SambaSetLocked(t testing.TB, f *Fixture, name string, locked bool) {
	t.Helper()
	o, ok := f.Server.ops.(*sambaOps)
	if !ok {
		t.Fatalf("ldaptest: SambaSetLocked on a %s fixture", f.Server.Flavor)
	}
	dn := f.userDN(name)
	if !locked {
		o.with(t, func(c *ldap.Conn) error {
			req := ldap.NewModifyRequest(dn, nil)
			req.Replace("lockoutTime", []string{"0"})
			if err := c.Modify(req); err != nil {
				return fmt.Errorf("unlock %s: %w", dn, err)
			}
			return nil
		})
		return
	}
	o.with(t, func(c *ldap.Conn) error {
		pso := "CN=pso-" + ldap.EscapeDN(f.Users[name]) + ",CN=Password Settings Container,CN=System," + f.Server.BaseDN
		req := ldap.NewAddRequest(pso, nil)
		req.Attribute("objectClass", []string{"msDS-PasswordSettings"})
		req.Attribute("msDS-PasswordSettingsPrecedence", []string{"1"})
		req.Attribute("msDS-PasswordReversibleEncryptionEnabled", []string{"FALSE"})
		req.Attribute("msDS-PasswordHistoryLength", []string{"0"})
		req.Attribute("msDS-PasswordComplexityEnabled", []string{"FALSE"})
		req.Attribute("msDS-MinimumPasswordLength", []string{"0"})
		req.Attribute("msDS-MinimumPasswordAge", []string{"0"})
		req.Attribute("msDS-MaximumPasswordAge", []string{"-9223372036854775808"})
		req.Attribute("msDS-LockoutThreshold", []string{"1"})
		// Negative 100 ns intervals: a 30-minute window, a one-day lockout,
		// far longer than any test.
		req.Attribute("msDS-LockoutObservationWindow", []string{"-18000000000"})
		req.Attribute("msDS-LockoutDuration", []string{"-864000000000"})
		req.Attribute("msDS-PSOAppliesTo", []string{dn})
		if err := c.Add(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
			return fmt.Errorf("add lockout policy for %s: %w", dn, err)
		}
		bad, err := o.dialNoBind()
		if err != nil {
			return err
		}
		defer bad.Close()
		if err := bad.Bind(dn, "not-"+Password); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return fmt.Errorf("failed bind to lock %s: %v, want invalid credentials", dn, err)
		}
		res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, 0, false, "(objectClass=*)", []string{"lockoutTime"}, nil))
		if err != nil || len(res.Entries) != 1 {
			return fmt.Errorf("read lockoutTime of %s: %v", dn, err)
		}
		if v := res.Entries[0].GetAttributeValue("lockoutTime"); v == "" || v == "0" {
			return fmt.Errorf("%s not locked after a failed bind (lockoutTime %q)", dn, v)
		}
		return nil
	})
}
