package ldaptest

import (
	"context"
	"crypto/tls"
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
	return ldap.NewSearchRequest(f.Dir.UsersDN+","+f.Dir.BaseDN, ldap.ScopeWholeSubtree,
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
	var got []string
	for _, e := range res.Entries {
		got = append(got, e.GetAttributeValue("uid"))
		if e.GetAttributeValue("entryUUID") == "" {
			t.Errorf("%s has no entryUUID", e.DN)
		}
	}
	var want []string
	for _, uid := range f.Users {
		want = append(want, uid)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("paged search uids = %v, want %v", got, want)
	}
}

func TestSlapdBinds(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	f := s.NewFixture(t)
	userDN := func(name string) string { return f.userDN(name) }

	tests := []struct {
		name     string
		user     string
		password string
		wantCode uint16 // 0: success
	}{
		{"alice binds", "alice", Password, 0},
		{"star (uid with *) binds", "star", Password, 0},
		{"carol is locked by ppolicy", "carol", Password, ldap.LDAPResultInvalidCredentials},
		{"wrong password", "bob", "nope", ldap.LDAPResultInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialPlain(t, s)
			err := c.Bind(userDN(tt.user), tt.password)
			if tt.wantCode == 0 && err != nil {
				t.Fatalf("bind %s: %v", tt.user, err)
			}
			if tt.wantCode != 0 && !ldap.IsErrorWithCode(err, tt.wantCode) {
				t.Fatalf("bind %s: got %v, want code %d", tt.user, err, tt.wantCode)
			}
		})
	}

	// Re-enabling carol lets her bind; disabling bob stops him.
	f.SetDisabled(t, "carol", false)
	f.SetDisabled(t, "carol", false) // idempotent
	f.SetDisabled(t, "bob", true)
	if err := dialPlain(t, s).Bind(userDN("carol"), Password); err != nil {
		t.Fatalf("carol after re-enable: %v", err)
	}
	if err := dialPlain(t, s).Bind(userDN("bob"), Password); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("bob after disable: got %v, want 49", err)
	}
}

func TestSlapdStarUserIsExact(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	f := s.NewFixture(t)
	c := s.AdminConn(t)
	res, err := c.Search(ldap.NewSearchRequest(f.Dir.UsersDN+","+f.Dir.BaseDN, ldap.ScopeWholeSubtree,
		ldap.NeverDerefAliases, 0, 10, false,
		"(uid="+ldap.EscapeFilter(f.Users["star"])+")", []string{"uid", "mail"}, nil))
	if err != nil {
		t.Fatalf("search star: %v", err)
	}
	if len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("uid") != f.Prefix+"st*r" {
		t.Fatalf("escaped search for %q found %d entries", f.Users["star"], len(res.Entries))
	}
	if got, want := res.Entries[0].GetAttributeValue("mail"), f.Prefix+"st*r@example.com"; got != want {
		t.Fatalf("star mail = %q, want %q", got, want)
	}
}

func TestSlapdMemberOf(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	f := s.NewFixture(t)
	c := s.AdminConn(t)
	memberOf := func(name string) []string {
		t.Helper()
		res, err := c.Search(ldap.NewSearchRequest(f.memberDN(name), ldap.ScopeBaseObject,
			ldap.NeverDerefAliases, 0, 10, false, "(objectClass=*)", []string{"memberOf"}, nil))
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		got := res.Entries[0].GetAttributeValues("memberOf")
		slices.Sort(got)
		return got
	}
	sorted := func(v ...string) []string { slices.Sort(v); return v }

	tests := []struct {
		name string
		user string
		want []string
	}{
		{"alice in admins", "alice", []string{f.Groups["admins"]}},
		{"frank in admins and staff", "frank", sorted(f.Groups["admins"], f.Groups["staff"])},
		{"dave only directly in devs", "dave", []string{f.Groups["devs"]}},
		{"devs group nested in staff", "devs", []string{f.Groups["staff"]}},
		{"erin in others", "erin", []string{f.Groups["others"]}},
	}
	for _, tt := range tests {
		if got := memberOf(tt.user); !slices.Equal(got, tt.want) {
			t.Errorf("%s: memberOf = %v, want %v", tt.name, got, tt.want)
		}
	}

	// Changes keep memberOf in step, including emptying a group.
	f.RemoveMember(t, "others", "erin")
	if got := memberOf("erin"); len(got) != 0 {
		t.Errorf("erin after removal: memberOf = %v", got)
	}
	f.AddMember(t, "others", "bob")
	if got, want := memberOf("bob"), sorted(f.Groups["others"], f.Groups["staff"]); !slices.Equal(got, want) {
		t.Errorf("bob after add: memberOf = %v, want %v", got, want)
	}
	f.AddUser(t, "gina", "admins", "others")
	if got, want := memberOf("gina"), sorted(f.Groups["admins"], f.Groups["others"]); !slices.Equal(got, want) {
		t.Errorf("gina: memberOf = %v, want %v", got, want)
	}
	f.DeleteUser(t, "gina")
	res, err := c.Search(ldap.NewSearchRequest(f.Groups["admins"], ldap.ScopeBaseObject,
		ldap.NeverDerefAliases, 0, 10, false, "(objectClass=*)", []string{"member"}, nil))
	if err != nil {
		t.Fatalf("read admins: %v", err)
	}
	if slices.Contains(res.Entries[0].GetAttributeValues("member"), f.userDN("gina")) {
		t.Errorf("deleted gina still a member of admins")
	}
}

func TestSlapdTLS(t *testing.T) {
	t.Parallel()
	s := StartSlapd(t)
	other, err := newCertSet("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherFile, other.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	good := s.TLSConfig(t)
	bad := (&Server{CAFile: otherFile}).TLSConfig(t)

	tests := []struct {
		name    string
		tls     *tls.Config
		start   bool // StartTLS on the plain port instead of LDAPS
		wantErr bool
	}{
		{"ldaps with CAFile", good, false, false},
		{"starttls with CAFile", good, true, false},
		{"ldaps with another CA", bad, false, true},
		{"starttls with another CA", bad, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				c   *ldap.Conn
				err error
			)
			d := ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second})
			if tt.start {
				c, err = ldap.DialURL(s.URL, d)
				if err == nil {
					defer c.Close()
					c.SetTimeout(10 * time.Second)
					err = c.StartTLS(tt.tls)
				}
			} else {
				c, err = ldap.DialURL(s.LDAPSURL, d, ldap.DialWithTLSConfig(tt.tls))
				if err == nil {
					defer c.Close()
					c.SetTimeout(10 * time.Second)
				}
			}
			if err == nil {
				err = c.Bind(s.AdminDN, s.AdminPassword)
			}
			if tt.wantErr != (err != nil) {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
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
	if err := dialPlain(t, s).Bind("uid="+BulkUserLogin(users-1)+","+d.UsersDN+","+d.BaseDN, Password); err != nil {
		t.Fatalf("bulk user bind: %v", err)
	}
}

func dialPlain(t *testing.T, s *Server) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetTimeout(10 * time.Second)
	t.Cleanup(func() { _ = c.Close() })
	return c
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
