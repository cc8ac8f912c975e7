package ldaptest

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// Helpers and test bodies the flavours share; each flavour's test file keeps
// its own Test functions (so -run picks a flavour) and passes what differs.

// dialT dials url with the harness's timeouts, unbound; the connection is
// closed when the test ends.
func dialT(t testing.TB, url string) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(url, ldap.DialWithDialer(&net.Dialer{Timeout: harnessDialTimeout}))
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetTimeout(harnessOpTimeout)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readEntry reads attrs of the one entry at dn.
func readEntry(t testing.TB, c *ldap.Conn, dn string, attrs ...string) *ldap.Entry {
	t.Helper()
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 10, false, "(objectClass=*)", attrs, nil))
	if err != nil {
		t.Fatalf("read %s: %v", dn, err)
	}
	if len(res.Entries) != 1 {
		t.Fatalf("read %s: %d entries", dn, len(res.Entries))
	}
	return res.Entries[0]
}

func sorted(v ...string) []string { slices.Sort(v); return v }

// fixtureLogins are the login names of f's users, sorted.
func fixtureLogins(f *Fixture) []string {
	var logins []string
	for _, login := range f.Users {
		logins = append(logins, login)
	}
	return sorted(logins...)
}

// entryValues is attr of every entry, sorted.
func entryValues(entries []*ldap.Entry, attr string) []string {
	var vals []string
	for _, e := range entries {
		vals = append(vals, e.GetAttributeValue(attr))
	}
	return sorted(vals...)
}

// tlsCase is an admin bind over TLS: LDAPS, or StartTLS on a plain URL.
type tlsCase struct {
	name    string
	url     string
	start   bool // StartTLS on the plain URL
	cfg     *tls.Config
	wantErr bool
}

// goodBadTLS is LDAPS and StartTLS on s, each with the server's CA (good) and
// with a client that trusts another (bad).
func goodBadTLS(s *Server, good, bad *tls.Config) []tlsCase {
	return []tlsCase{
		{"ldaps with CAFile", s.LDAPSURL, false, good, false},
		{"starttls with CAFile", s.URL, true, good, false},
		{"ldaps with another CA", s.LDAPSURL, false, bad, true},
		{"starttls with another CA", s.URL, true, bad, true},
	}
}

// otherCATLS trusts only a fresh CA that signed no server's certificate:
// a client configured with the wrong tls.ca_file.
func otherCATLS(t *testing.T) *tls.Config {
	t.Helper()
	other, err := newCertSet("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(file, other.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return (&Server{CAFile: file}).TLSConfig(t)
}

func testTLS(t *testing.T, s *Server, cases []tlsCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			// The TLS config is used by ldaps:// only; StartTLS takes it below.
			c, err := ldap.DialURL(tt.url, ldap.DialWithDialer(&net.Dialer{Timeout: harnessDialTimeout}),
				ldap.DialWithTLSConfig(tt.cfg))
			if err == nil {
				defer c.Close()
				c.SetTimeout(harnessOpTimeout)
				if tt.start {
					err = c.StartTLS(tt.cfg)
				}
			}
			if err == nil {
				err = c.Bind(s.AdminDN, s.AdminPassword)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// testFixtureBinds binds as fixture users by DN, then disables and
// re-enables some. disabledCode is the flavour's answer to a disabled user,
// with the right password or not: 49 on OpenLDAP (ppolicy hides the lock),
// 53 on 389-ds.
func testFixtureBinds(t *testing.T, s *Server, disabledCode uint16) {
	f := s.NewFixture(t)
	bind := func(t *testing.T, name, password string) error {
		t.Helper()
		return dialT(t, s.URL).Bind(f.userDN(name), password)
	}
	tests := []struct {
		name     string
		user     string
		password string
		wantCode uint16 // 0: success
	}{
		{"alice binds", "alice", Password, 0},
		{"star (uid with *) binds", "star", Password, 0},
		{"carol is disabled", "carol", Password, disabledCode},
		{"carol with a wrong password", "carol", "nope", disabledCode},
		{"wrong password", "bob", "nope", ldap.LDAPResultInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := bind(t, tt.user, tt.password)
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
	if err := bind(t, "carol", Password); err != nil {
		t.Fatalf("carol after re-enable: %v", err)
	}
	if err := bind(t, "bob", Password); !ldap.IsErrorWithCode(err, disabledCode) {
		t.Fatalf("bob after disable: got %v, want %d", err, disabledCode)
	}
}

// testFixtureMemberOf checks memberOf of the fixture's users and of a nested
// group, then that Fixture's changes keep it in step. flattened: the server
// lists groups reached through nesting too (389-ds's MemberOf plugin does,
// OpenLDAP's memberof overlay does not).
func testFixtureMemberOf(t *testing.T, s *Server, flattened bool) {
	f := s.NewFixture(t)
	c := s.AdminConn(t)
	memberOf := func(name string) []string {
		t.Helper()
		return sorted(readEntry(t, c, f.memberDN(name), "memberOf").GetAttributeValues("memberOf")...)
	}
	daveIn := []string{f.Groups["devs"]}
	if flattened {
		daveIn = sorted(f.Groups["devs"], f.Groups["staff"])
	}
	tests := []struct {
		name string
		user string
		want []string
	}{
		{"alice in admins", "alice", []string{f.Groups["admins"]}},
		{"frank in admins and staff", "frank", sorted(f.Groups["admins"], f.Groups["staff"])},
		{"dave in devs (and staff if flattened)", "dave", daveIn},
		{"devs group nested in staff", "devs", []string{f.Groups["staff"]}},
		{"star in staff", "star", []string{f.Groups["staff"]}},
		{"erin in others", "erin", []string{f.Groups["others"]}},
	}
	for _, tt := range tests {
		if got := memberOf(tt.user); !slices.Equal(got, tt.want) {
			t.Errorf("%s: memberOf = %v, want %v", tt.name, got, tt.want)
		}
	}

	// Changes keep memberOf in step: emptying a group, adding, nesting
	// removed, a new user, a deleted user.
	f.RemoveMember(t, "others", "erin")
	if got := memberOf("erin"); len(got) != 0 {
		t.Errorf("erin after removal: memberOf = %v", got)
	}
	f.AddMember(t, "others", "bob")
	if got, want := memberOf("bob"), sorted(f.Groups["others"], f.Groups["staff"]); !slices.Equal(got, want) {
		t.Errorf("bob after add: memberOf = %v, want %v", got, want)
	}
	f.RemoveMember(t, "staff", "devs")
	if got, want := memberOf("dave"), []string{f.Groups["devs"]}; !slices.Equal(got, want) {
		t.Errorf("dave after un-nesting devs: memberOf = %v, want %v", got, want)
	}
	f.AddUser(t, "gina", "admins", "others")
	if got, want := memberOf("gina"), sorted(f.Groups["admins"], f.Groups["others"]); !slices.Equal(got, want) {
		t.Errorf("gina: memberOf = %v, want %v", got, want)
	}
	f.DeleteUser(t, "gina")
	if slices.Contains(readEntry(t, c, f.Groups["admins"], "member").GetAttributeValues("member"), f.userDN("gina")) {
		t.Errorf("deleted gina still a member of admins")
	}
}

// testStarUserIsExact finds the user whose uid holds a real '*' with an
// escaped filter: exactly one entry, the right one.
func testStarUserIsExact(t *testing.T, s *Server) {
	f := s.NewFixture(t)
	c := s.AdminConn(t)
	res, err := c.Search(ldap.NewSearchRequest(f.usersDN(), ldap.ScopeWholeSubtree,
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
