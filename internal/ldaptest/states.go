package ldaptest

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Account states of SPEC §13, set the way each directory keeps them. A
// helper returns false where the flavour has no such state (the table's
// "—"), so a conformance row can say so instead of faking it.

// slapdStatesPolicy is the ppolicy entry scripts/test-ldap/slapd.sh writes
// for account-state tests: pwdMaxAge 30 days without grace, pwdMustChange,
// pwdMinLength 12 (pwdCheckQuality 2), pwdInHistory 3, lockout after 3
// failures for 10 minutes.
const slapdStatesPolicy = "cn=states,ou=policies,dc=example,dc=com"

// SlapdStatesPolicyMinLength is the states policy's pwdMinLength.
const SlapdStatesPolicyMinLength = 12

// relaxControl (draft-zeilenga-ldap-relax) lets cn=admin, with manage
// access, write ppolicy's NO-USER-MODIFICATION attributes (pwdReset,
// pwdChangedTime) the way slapd itself would.
var relaxControl = ldap.NewControlString("1.3.6.1.4.1.4203.666.5.12", true, "")

// UseStatesPolicy puts a fixture user under a password policy that
// refuses new passwords shorter than SlapdStatesPolicyMinLength: on
// OpenLDAP the states ppolicy (pwdPolicySubentry), on AD a fine-grained
// password policy (PSO) applying to the user alone, since the shared test
// domain's own policy is relaxed. A no-op on 389-ds, whose policy stays
// the server's.
func (f *Fixture) UseStatesPolicy(t testing.TB, name string) {
	t.Helper()
	switch f.Server.Flavor {
	case OpenLDAP:
		f.modify(t, name, nil, func(r *ldap.ModifyRequest) { r.Replace("pwdPolicySubentry", []string{slapdStatesPolicy}) })
	case Samba:
		dn := f.userDN(name)
		pso := "CN=pso-len-" + ldap.EscapeDN(f.Users[name]) + ",CN=Password Settings Container,CN=System," + f.Server.BaseDN
		f.Server.ops.admin(t, f.Server, func(c *ldap.Conn) error {
			req := ldap.NewAddRequest(pso, nil)
			req.Attribute("objectClass", []string{"msDS-PasswordSettings"})
			req.Attribute("msDS-PasswordSettingsPrecedence", []string{"1"})
			req.Attribute("msDS-PasswordReversibleEncryptionEnabled", []string{"FALSE"})
			req.Attribute("msDS-PasswordHistoryLength", []string{"0"})
			req.Attribute("msDS-PasswordComplexityEnabled", []string{"FALSE"})
			req.Attribute("msDS-MinimumPasswordLength", []string{strconv.Itoa(SlapdStatesPolicyMinLength)})
			req.Attribute("msDS-MinimumPasswordAge", []string{"0"})
			req.Attribute("msDS-MaximumPasswordAge", []string{"-9223372036854775808"})
			req.Attribute("msDS-LockoutThreshold", []string{"0"})
			req.Attribute("msDS-LockoutObservationWindow", []string{"-18000000000"})
			req.Attribute("msDS-LockoutDuration", []string{"-18000000000"})
			req.Attribute("msDS-PSOAppliesTo", []string{dn})
			if err := c.Add(req); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
				return fmt.Errorf("add password policy for %s: %w", dn, err)
			}
			return nil
		})
		t.Cleanup(func() {
			f.Server.ops.admin(t, f.Server, func(c *ldap.Conn) error {
				if err := c.Del(ldap.NewDelRequest(pso, nil)); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
					t.Logf("ldaptest: cleanup: delete %s: %v", pso, err)
				}
				return nil
			})
		})
	}
}

// SetMustChangePassword makes the user's password one that must be
// changed at the next login: on OpenLDAP pwdReset: TRUE under the states
// policy (what an administrator's reset sets; written directly because a
// reset to the same password within the same second would put a duplicate
// value in pwdHistory, refusing the user's change with result 20), on AD
// pwdLastSet 0, on
// FreeIPA-shaped 389-ds krbPasswordExpiration in the past (a plain 389-ds
// does not enforce it: ldapgate reads it from the entry).
func (f *Fixture) SetMustChangePassword(t testing.TB, name string) {
	t.Helper()
	switch f.Server.Flavor {
	case OpenLDAP:
		f.UseStatesPolicy(t, name)
		f.modify(t, name, []ldap.Control{relaxControl}, func(r *ldap.ModifyRequest) { r.Replace("pwdReset", []string{"TRUE"}) })
	case Samba:
		f.modify(t, name, nil, func(r *ldap.ModifyRequest) { r.Replace("pwdLastSet", []string{"0"}) })
	case DS389:
		f.krbTime(t, name, "krbPasswordExpiration", time.Now().Add(-time.Hour))
	}
}

// SetPasswordExpired ages the user's password past the policy's maximum:
// OpenLDAP pwdChangedTime beyond the states policy's pwdMaxAge. False on
// the other flavours (AD's expiry needs the domain's maxPwdAge, which a
// shared test domain keeps off; 389-ds's is SetMustChangePassword's).
func (f *Fixture) SetPasswordExpired(t testing.TB, name string) bool {
	t.Helper()
	if f.Server.Flavor != OpenLDAP {
		return false
	}
	f.UseStatesPolicy(t, name)
	f.modify(t, name, []ldap.Control{relaxControl}, func(r *ldap.ModifyRequest) {
		r.Replace("pwdChangedTime", []string{"20000101000000Z"})
	})
	return true
}

// SetAccountExpires sets when the account expires: AD accountExpires (what
// samba-tool user setexpiry writes), FreeIPA krbPrincipalExpiration. False
// on OpenLDAP, which has no account expiry.
func (f *Fixture) SetAccountExpires(t testing.TB, name string, at time.Time) bool {
	t.Helper()
	switch f.Server.Flavor {
	case Samba:
		ft := at.UTC().Unix()*1e7 + 116444736000000000
		f.modify(t, name, nil, func(r *ldap.ModifyRequest) { r.Replace("accountExpires", []string{strconv.FormatInt(ft, 10)}) })
		return true
	case DS389:
		f.krbTime(t, name, "krbPrincipalExpiration", at)
		return true
	}
	return false
}

// SetLockedOut locks the user out the way failed binds do: OpenLDAP
// pwdAccountLockedTime set to now (not the administrator's 000001010000Z),
// AD lockoutTime through a failed bind (SambaSetLocked). False on 389-ds,
// whose lockout SPEC §13 does not list.
func (f *Fixture) SetLockedOut(t testing.TB, name string) bool {
	t.Helper()
	switch f.Server.Flavor {
	case OpenLDAP:
		f.UseStatesPolicy(t, name)
		f.modify(t, name, nil, func(r *ldap.ModifyRequest) {
			r.Replace("pwdAccountLockedTime", []string{time.Now().UTC().Format("20060102150405Z")})
		})
		return true
	case Samba:
		SambaSetLocked(t, f, name, true)
		return true
	}
	return false
}

// modify changes the user's entry as the admin.
func (f *Fixture) modify(t testing.TB, name string, ctls []ldap.Control, fn func(*ldap.ModifyRequest)) {
	t.Helper()
	dn := f.userDN(name)
	f.Server.ops.admin(t, f.Server, func(c *ldap.Conn) error {
		r := ldap.NewModifyRequest(dn, ctls)
		fn(r)
		if err := c.Modify(r); err != nil {
			return fmt.Errorf("modify %s: %w", dn, err)
		}
		return nil
	})
}

// krbTime sets a Kerberos expiry attribute on a 389-ds fixture user,
// adding the krbPrincipalAux class (and, once per process, the schema a
// plain 389-ds lacks) first.
func (f *Fixture) krbTime(t testing.TB, name, attrName string, at time.Time) {
	t.Helper()
	ds389KrbSchema(t, f.Server)
	dn := f.userDN(name)
	f.Server.ops.admin(t, f.Server, func(c *ldap.Conn) error {
		r := ldap.NewModifyRequest(dn, nil)
		r.Add("objectClass", []string{"krbPrincipalAux"})
		if err := c.Modify(r); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultAttributeOrValueExists) {
			return fmt.Errorf("add krbPrincipalAux to %s: %w", dn, err)
		}
		r = ldap.NewModifyRequest(dn, nil)
		r.Replace(attrName, []string{at.UTC().Format("20060102150405Z")})
		if err := c.Modify(r); err != nil {
			return fmt.Errorf("set %s of %s: %w", attrName, dn, err)
		}
		return nil
	})
}

var ds389KrbOnce sync.Once

// ds389KrbSchema adds FreeIPA's two Kerberos expiry attributes and an
// auxiliary class holding them to the shared 389-ds, if it lacks them
// (scripts/test-ldap/389ds.sh writes them for instances it creates; an
// instance started before did not get them). Additive and idempotent:
// other fixtures on the shared server are not affected.
func ds389KrbSchema(t testing.TB, s *Server) {
	t.Helper()
	ds389KrbOnce.Do(func() {
		s.withAdmin(t, func(c *ldap.Conn) error {
			for _, def := range []struct{ typ, val string }{
				{"attributeTypes", "( 2.16.840.1.113719.1.301.4.10.1 NAME 'krbPrincipalExpiration' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE X-ORIGIN 'MIT Kerberos (ldapgate test)' )"},
				{"attributeTypes", "( 2.16.840.1.113719.1.301.4.11.1 NAME 'krbPasswordExpiration' EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE X-ORIGIN 'MIT Kerberos (ldapgate test)' )"},
				{"objectClasses", "( 2.16.840.1.113719.1.301.6.8.1 NAME 'krbPrincipalAux' SUP top AUXILIARY MAY ( krbPrincipalExpiration $ krbPasswordExpiration ) X-ORIGIN 'MIT Kerberos (ldapgate test)' )"},
			} {
				r := ldap.NewModifyRequest("cn=schema", nil)
				r.Add(def.typ, []string{def.val})
				if err := c.Modify(r); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultAttributeOrValueExists) {
					return fmt.Errorf("add %s to the 389-ds schema: %w", def.typ, err)
				}
			}
			return nil
		})
	})
}
