package ldaptest

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// usersSearch is a subtree search of the fixture's users as the admin.
func usersSearch(f *Fixture) *ldap.SearchRequest {
	return ldap.NewSearchRequest(f.usersDN(), ldap.ScopeWholeSubtree,
		ldap.NeverDerefAliases, 0, 10, false, "(objectClass=inetOrgPerson)", []string{"uid", "entryUUID"}, nil)
}

func TestSlapdSizeLimitForcesPaging(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	f := s.NewFixture(t)
	c := s.AdminConn(t)

	if len(f.Users) <= SlapdSizeLimit {
		t.Fatalf("fixture has %d users, needs more than the size limit %d", len(f.Users), SlapdSizeLimit)
	}
	_, err := c.Search(usersSearch(f))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		t.Fatalf("non-paged search: got %v, want resultCode 4 (sizeLimitExceeded)", err)
	}

	res, err := c.SearchWithPaging(usersSearch(f), uint32(f.Dir.PageSize))
	if err != nil {
		t.Fatalf("paged search: %v", err)
	}
	for _, e := range res.Entries {
		if e.GetAttributeValue("entryUUID") == "" {
			t.Errorf("%s has no entryUUID", e.DN)
		}
	}
	if got, want := entryValues(res.Entries, "uid"), fixtureLogins(f); !slices.Equal(got, want) {
		t.Fatalf("paged search uids = %v, want %v", got, want)
	}
}

func TestSlapdBinds(t *testing.T) {
	t.Parallel()
	// ppolicy answers a locked account as a wrong password.
	testFixtureBinds(t, StartSlapd(t), ldap.LDAPResultInvalidCredentials)
}

func TestSlapdStarUserIsExact(t *testing.T) {
	t.Parallel()
	testStarUserIsExact(t, StartSlapd(t))
}

func TestSlapdMemberOf(t *testing.T) {
	t.Parallel()
	testFixtureMemberOf(t, StartSlapd(t), false)
}

func TestSlapdTLS(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	testTLS(t, s, goodBadTLS(s, s.TLSConfig(t), otherCATLS(t)))
}

func TestSlapdStop(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	c := s.AdminConn(t)
	req := ldap.NewSearchRequest(s.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 5, false, "(objectClass=*)", nil, nil)
	if _, err := c.Search(req); err != nil {
		t.Fatalf("search before Stop: %v", err)
	}
	s.Stop()
	s.Stop() // idempotent
	if _, err := c.Search(req); err == nil {
		t.Fatal("search on the old connection succeeded after Stop")
	}
	if err := pingLDAP(s.URL); err == nil {
		t.Fatal("new connection answered after Stop")
	}
}

func TestSlapdBulk(t *testing.T) {
	t.Parallel()
	const users, groups = 1000, 7
	s := StartSlapdWith(t, SlapdOptions{BulkUsers: users, BulkGroups: groups})
	d := BulkDirectory(s)
	c := s.AdminConn(t)

	res, err := c.SearchWithPaging(ldap.NewSearchRequest(d.UsersDN+","+d.BaseDN, ldap.ScopeSingleLevel,
		ldap.NeverDerefAliases, 0, 30, false, "(objectClass=inetOrgPerson)", []string{"uid", "memberOf", "entryUUID"}, nil),
		uint32(d.PageSize))
	if err != nil {
		t.Fatalf("paged search: %v", err)
	}
	if len(res.Entries) != users {
		t.Fatalf("paged search found %d bulk users, want %d", len(res.Entries), users)
	}
	for _, e := range res.Entries {
		if e.GetAttributeValue("memberOf") == "" {
			t.Fatalf("%s has no memberOf", e.DN)
		}
		// slapadd must have generated the immutable id the syncer keys on.
		if e.GetAttributeValue("entryUUID") == "" {
			t.Fatalf("%s has no entryUUID", e.DN)
		}
	}
	grp, err := c.Search(ldap.NewSearchRequest(BulkGroupDN(s, 0), ldap.ScopeBaseObject,
		ldap.NeverDerefAliases, 0, 10, false, "(objectClass=groupOfNames)", []string{"member"}, nil))
	if err != nil {
		t.Fatalf("read bulkgrp000: %v", err)
	}
	if got, want := len(grp.Entries[0].GetAttributeValues("member")), (users+groups-1)/groups; got != want {
		t.Fatalf("bulkgrp000 has %d members, want %d", got, want)
	}
	if err := dialT(t, s.URL).Bind("uid="+BulkUserLogin(users-1)+","+d.UsersDN+","+d.BaseDN, Password); err != nil {
		t.Fatalf("bulk user bind: %v", err)
	}
}

// A port taken between freePorts and slapd's bind must be reported as
// errPortTaken, which StartSlapdWith retries with fresh ports.
func TestSlapdPortTakenIsRetryable(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t) // prepares a directory with slapd.conf and a database
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, _, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(s.CAFile)
	s.Stop() // the database is single-writer: free it for the second slapd
	p, err := startSlapdProcess(dir, free, taken.Addr().(*net.TCPAddr).Port)
	if err == nil {
		p.stop()
		t.Fatal("slapd started on a taken port")
	}
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("err = %v, want errPortTaken", err)
	}
}

// The script is also run by hand: without SLAPD_PREPARE_ONLY it starts slapd
// itself, waits for it and prints its PID.
func TestSlapdScriptByHand(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(slapdBinary); err != nil {
		Missing(t, "%s not installed", slapdBinary)
	}
	script, err := slapdScript()
	if err != nil {
		t.Fatal(err)
	}
	port, tlsPort, err := freePorts()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script, t.TempDir(), strconv.Itoa(port), strconv.Itoa(tlsPort)).Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("script printed %q, want a PID", out)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	s := &Server{URL: "ldap://127.0.0.1:" + strconv.Itoa(port), AdminDN: slapdAdminDN, AdminPassword: "admin-secret"}
	c := s.AdminConn(t)
	if _, err := c.Search(ldap.NewSearchRequest("cn=default,ou=policies,"+slapdBaseDN, ldap.ScopeBaseObject,
		ldap.NeverDerefAliases, 0, 10, false, "(pwdLockout=TRUE)", nil, nil)); err != nil {
		t.Fatalf("ppolicy entry: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill printed PID %d: %v", pid, err)
	}
}
