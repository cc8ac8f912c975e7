package ldaptest

import (
	"regexp"
	"slices"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

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
		e := readEntry(t, c, f.userDN(name), "uid", "mail", "ipaUniqueID", "objectClass", "nsAccountLock")
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
	res, err := c.Search(ldap.NewSearchRequest(f.groupsDN(), ldap.ScopeSingleLevel,
		ldap.NeverDerefAliases, 0, 30, false, "(objectClass=groupOfNames)", []string{"cn"}, nil))
	if err != nil {
		t.Fatalf("search groups: %v", err)
	}
	if len(res.Entries) != len(f.Groups) {
		t.Errorf("groups under %s: %d, want %d", f.Dir.GroupsDN, len(res.Entries), len(f.Groups))
	}
	for _, dns := range f.Dir.RoleMapping {
		for _, dn := range dns {
			readEntry(t, c, dn, "cn")
		}
	}
}

func TestDS389MemberOf(t *testing.T) {
	// The MemberOf plugin flattens nesting, unlike OpenLDAP's overlay.
	testFixtureMemberOf(t, Shared389(t), true)
}

func TestDS389Binds(t *testing.T) {
	// 389-ds answers a locked account with 53 "Account inactivated",
	// whatever the password: that is what the freeipa flavour maps.
	testFixtureBinds(t, Shared389(t), ldap.LDAPResultUnwillingToPerform)
}

func TestDS389Paging(t *testing.T) {
	s := Shared389(t)
	f := s.NewFixture(t)
	c := s.AdminConn(t)

	// Page by hand to prove the server really pages at Dir.PageSize.
	req := ldap.NewSearchRequest(f.usersDN(), ldap.ScopeWholeSubtree,
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
	want := fixtureLogins(f)
	if got := sorted(got...); !slices.Equal(got, want) {
		t.Fatalf("paged search uids = %v, want %v", got, want)
	}
	if min := (len(want) + f.Dir.PageSize - 1) / f.Dir.PageSize; pages < min {
		t.Fatalf("%d pages for %d users at page size %d, want at least %d", pages, len(want), f.Dir.PageSize, min)
	}
}

func TestDS389StarUserIsExact(t *testing.T) {
	testStarUserIsExact(t, Shared389(t))
}

func TestDS389TLS(t *testing.T) {
	s := Shared389(t)
	testTLS(t, s, goodBadTLS(s, s.TLSConfig(t), otherCATLS(t)))
}
