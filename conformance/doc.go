// Package conformance runs one table of expectations against every real
// directory flavour ldapgate supports — OpenLDAP slapd, Samba AD DC and 389
// Directory Server shaped like FreeIPA — through the same code paths
// production uses: the directory client, the syncer and the login service.
// Rows name the flavours they apply to: the same expectation where SPEC §4/§5
// give the same rule, flavour-specific rows where the servers differ (AD's
// rule 2, paging limits and range retrieval; 389-ds's result 53; OpenLDAP's
// ppolicy lock).
//
// The package holds tests only. Servers come from internal/ldaptest: a fresh
// slapd per test, and the shared Samba and 389-ds started by
// scripts/test-ldap/{samba,389ds}.sh; without them the tests skip, unless
// LDAPGATE_REQUIRE_REAL_LDAP=1 (CI), where they fail.
package conformance
