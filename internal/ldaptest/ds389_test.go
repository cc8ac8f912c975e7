package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// ds389Dial dials url with the harness's timeouts; the connection is closed
// when the test ends.
func ds389Dial(t *testing.T, url string) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(url, ldap.DialWithDialer(&net.Dialer{Timeout: harnessDialTimeout}))
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetTimeout(harnessOpTimeout)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// ds389Read reads attrs of one entry as the admin.
func ds389Read(t *testing.T, c *ldap.Conn, dn string, attrs ...string) *ldap.Entry {
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

func TestDS389FromEnv(t *testing.T) {
	full := map[string]string{
		ds389EnvURL:           "ldap://127.0.0.1:3389",
		ds389EnvLDAPSURL:      "ldaps://127.0.0.1:3636",
		ds389EnvCA:            "/x/ca.pem",
		ds389EnvBase:          "dc=example,dc=com",
		ds389EnvAdminDN:       "cn=Directory Manager",
		ds389EnvAdminPassword: "pw",
	}
	tests := []struct {
		name        string
		drop        []string
		wantMissing []string
	}{
		{"all set", nil, nil},
		{"no URL", []string{ds389EnvURL}, []string{ds389EnvURL}},
		{"no CA or password", []string{ds389EnvCA, ds389EnvAdminPassword}, []string{ds389EnvCA, ds389EnvAdminPassword}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, missing := ds389FromEnv(func(k string) string {
				if slices.Contains(tt.drop, k) {
					return ""
				}
				return full[k]
			})
			if !slices.Equal(missing, tt.wantMissing) {
				t.Fatalf("missing = %v, want %v", missing, tt.wantMissing)
			}
			if len(tt.wantMissing) > 0 {
				return
			}
			want := Server{Flavor: DS389, URL: full[ds389EnvURL], LDAPSURL: full[ds389EnvLDAPSURL],
				CAFile: "/x/ca.pem", BaseDN: "dc=example,dc=com", AdminDN: "cn=Directory Manager", AdminPassword: "pw"}
			if s.Flavor != want.Flavor || s.URL != want.URL || s.LDAPSURL != want.LDAPSURL || s.CAFile != want.CAFile ||
				s.BaseDN != want.BaseDN || s.AdminDN != want.AdminDN || s.AdminPassword != want.AdminPassword {
				t.Fatalf("server = %+v, want %+v", *s, want)
			}
			if s.Stop != nil {
				t.Fatal("shared server has a Stop func")
			}
			if _, ok := s.ops.(ds389Ops); !ok {
				t.Fatalf("ops = %T, want ds389Ops", s.ops)
			}
		})
	}
}

var ds389UUIDRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDS389FixtureShape(t *testing.T) {
	s := Shared389(t)
	f := s.NewFixture(t)
	c := s.AdminConn(t)

	if f.Dir.Type != config.TypeFreeIPA || f.Dir.GroupNameAttribute != "memberOf" || f.Dir.PageSize != 2 {
		t.Fatalf("Dir = %+v: want type freeipa, memberOf, page size 2", f.Dir)
	}
	seen := map[string]string{}
	for name, uid := range f.Users {
		e := ds389Read(t, c, f.userDN(name), "uid", "mail", "ipaUniqueID", "objectClass", "nsAccountLock")
		id := e.GetAttributeValue("ipaUniqueID")
		if !ds389UUIDRe.MatchString(id) {
			t.Errorf("%s: ipaUniqueID %q is not a UUID", name, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("%s and %s share ipaUniqueID %s", name, other, id)
		}
		seen[id] = name
		if got := e.GetAttributeValue("uid"); got != uid {
			t.Errorf("%s: uid = %q, want %q", name, got, uid)
		}
		if got, want := e.GetAttributeValue("mail"), uid+"@example.com"; got != want {
			t.Errorf("%s: mail = %q, want %q", name, got, want)
		}
		if !slices.ContainsFunc(e.GetAttributeValues("objectClass"), func(v string) bool { return v == "ipaObject" }) {
			t.Errorf("%s: objectClass %v lacks ipaObject", name, e.GetAttributeValues("objectClass"))
		}
		// nsAccountLock is operational in 389-ds: returned only when asked,
		// as here; carol alone carries it.
		if got, want := e.GetAttributeValue("nsAccountLock"), map[bool]string{true: "TRUE"}[name == "carol"]; got != want {
			t.Errorf("%s: nsAccountLock = %q, want %q", name, got, want)
		}
	}

	// The configured subtree is where the users are: a client following
	// Dir.UsersDN/GroupsDN finds exactly the fixture.
	res, err := c.Search(ldap.NewSearchRequest(f.Dir.GroupsDN+","+f.Dir.BaseDN, ldap.ScopeSingleLevel,
		ldap.NeverDerefAliases, 0, 30, false, "(objectClass=groupOfNames)", []string{"cn"}, nil))
	if err != nil {
		t.Fatalf("search groups: %v", err)
	}
	if len(res.Entries) != len(f.Groups) {
		t.Errorf("groups under %s: %d, want %d", f.Dir.GroupsDN, len(res.Entries), len(f.Groups))
	}
	for _, dns := range f.Dir.RoleMapping {
		for _, dn := range dns {
			ds389Read(t, c, dn, "cn")
		}
	}
}

func TestDS389MemberOf(t *testing.T) {
	s := Shared389(t)
	f := s.NewFixture(t)
	c := s.AdminConn(t)
	memberOf := func(name string) []string {
		t.Helper()
		got := ds389Read(t, c, f.memberDN(name), "memberOf").GetAttributeValues("memberOf")
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
		// The MemberOf plugin flattens nesting, unlike OpenLDAP's overlay.
		{"dave in devs and, through it, staff", "dave", sorted(f.Groups["devs"], f.Groups["staff"])},
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
	if slices.Contains(ds389Read(t, c, f.Groups["admins"], "member").GetAttributeValues("member"), f.userDN("gina")) {
		t.Errorf("deleted gina still a member of admins")
	}
}

func TestDS389Binds(t *testing.T) {
	s := Shared389(t)
	f := s.NewFixture(t)
	bind := func(t *testing.T, name, password string) error {
		t.Helper()
		return ds389Dial(t, s.URL).Bind(f.userDN(name), password)
	}

	tests := []struct {
		name     string
		user     string
		password string
		wantCode uint16 // 0: success
	}{
		{"alice binds", "alice", Password, 0},
		{"star (uid with *) binds", "star", Password, 0},
		// 389-ds answers a locked account with 53 "Account inactivated",
		// whatever the password: that is what the freeipa flavour maps.
		{"carol is inactivated", "carol", Password, ldap.LDAPResultUnwillingToPerform},
		{"carol with a wrong password is still 53", "carol", "nope", ldap.LDAPResultUnwillingToPerform},
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

	// Re-enabling carol lets her bind; disabling bob stops him with 53.
	f.SetDisabled(t, "carol", false)
	f.SetDisabled(t, "carol", false) // idempotent
	f.SetDisabled(t, "bob", true)
	if err := bind(t, "carol", Password); err != nil {
		t.Fatalf("carol after re-enable: %v", err)
	}
	if err := bind(t, "bob", Password); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
		t.Fatalf("bob after disable: got %v, want 53", err)
	}
}

func TestDS389Paging(t *testing.T) {
	s := Shared389(t)
	f := s.NewFixture(t)
	c := s.AdminConn(t)

	// Page by hand to prove the server really pages at Dir.PageSize.
	req := ldap.NewSearchRequest(f.Dir.UsersDN+","+f.Dir.BaseDN, ldap.ScopeWholeSubtree,
		ldap.NeverDerefAliases, 0, 30, false, "(objectClass=inetOrgPerson)", []string{"uid"}, nil)
	paging := ldap.NewControlPaging(uint32(f.Dir.PageSize))
	req.Controls = []ldap.Control{paging}
	var got []string
	pages := 0
	for {
		res, err := c.Search(req)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		if len(res.Entries) > f.Dir.PageSize {
			t.Fatalf("page %d has %d entries, page size %d", pages, len(res.Entries), f.Dir.PageSize)
		}
		for _, e := range res.Entries {
			got = append(got, e.GetAttributeValue("uid"))
		}
		ctrl, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if !ok {
			t.Fatalf("page %d: no paging control in the answer", pages)
		}
		if len(ctrl.Cookie) == 0 {
			break
		}
		paging.SetCookie(ctrl.Cookie)
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
	if min := (len(want) + f.Dir.PageSize - 1) / f.Dir.PageSize; pages < min {
		t.Fatalf("%d pages for %d users at page size %d, want at least %d", pages, len(want), f.Dir.PageSize, min)
	}
}

func TestDS389StarUserIsExact(t *testing.T) {
	s := Shared389(t)
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
}

func TestDS389TLS(t *testing.T) {
	s := Shared389(t)
	good := s.TLSConfig(t)
	// A client trusting some other CA: an empty pool rejects every chain,
	// so the test owns no second CA.
	bad := good.Clone()
	bad.RootCAs = x509.NewCertPool()

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
			d := ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second})
			var (
				c   *ldap.Conn
				err error
			)
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
