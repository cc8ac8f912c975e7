package ldaptest

import (
	"os"
	"strings"
	"testing"
)

// Environment written by scripts/test-ldap/389ds.sh start (its stdout and
// STATE_DIR/server.env): one 389 Directory Server per test run, shared by
// every package, so fixtures carry unique prefixes.
const (
	ds389EnvURL           = "LDAPGATE_TEST_389_URL"
	ds389EnvLDAPSURL      = "LDAPGATE_TEST_389_LDAPS_URL"
	ds389EnvCA            = "LDAPGATE_TEST_389_CA"
	ds389EnvBase          = "LDAPGATE_TEST_389_BASE"
	ds389EnvAdminDN       = "LDAPGATE_TEST_389_ADMIN_DN"
	ds389EnvAdminPassword = "LDAPGATE_TEST_389_ADMIN_PASSWORD"
)

// Shared389 returns the 389 Directory Server that scripts/test-ldap/389ds.sh
// started for this run, shaped like FreeIPA: cn=users,cn=accounts and
// cn=groups,cn=accounts under the base, the MemberOf plugin on (nested groups
// show in memberOf), FreeIPA's ipaUniqueID/ipaObject schema loaded, and
// nsAccountLock: TRUE refusing binds with result 53. Stop is nil: the script
// owns the process.
//
// Start it with
//
//	eval "$(scripts/test-ldap/389ds.sh start /tmp/ldapgate-389)"
func Shared389(t testing.TB) *Server {
	t.Helper()
	s, missing := ds389FromEnv(os.Getenv)
	if len(missing) > 0 {
		Missing(t, "389 Directory Server: %s unset (run eval \"$(scripts/test-ldap/389ds.sh start DIR)\")",
			strings.Join(missing, ", "))
		return nil
	}
	return s
}

// ds389FromEnv builds the Server from the script's variables and names those
// missing; getenv is a parameter so the mapping is testable without a server.
func ds389FromEnv(getenv func(string) string) (*Server, []string) {
	var missing []string
	get := func(k string) string {
		v := getenv(k)
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	s := &Server{
		Flavor:        DS389,
		URL:           get(ds389EnvURL),
		LDAPSURL:      get(ds389EnvLDAPSURL),
		CAFile:        get(ds389EnvCA),
		BaseDN:        get(ds389EnvBase),
		AdminDN:       get(ds389EnvAdminDN),
		AdminPassword: get(ds389EnvAdminPassword),
		ops:           ds389Ops{},
	}
	return s, missing
}
