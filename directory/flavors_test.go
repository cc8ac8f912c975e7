package directory

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// TestFlavors runs one table of expectations against OpenLDAP, Samba AD and
// 389-ds (FreeIPA-shaped), with flavour-specific rows where the directories
// differ: how a disabled account's bind fails, nested memberOf, AD's
// primary group and the Builtin\Users chain.
func TestFlavors(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		f := s.NewFixture(t)
		l := openT(t, f.Dir)
		ctx := testCtx(t)

		// Users: everyone, with ids, paged (page_size 2).
		users := map[string]User{}
		if err := l.ReadUsers(ctx, func(u User) error {
			if _, dup := users[strings.ToLower(u.Username)]; dup {
				t.Errorf("user %s read twice", u.Username)
			}
			users[strings.ToLower(u.Username)] = u
			return nil
		}); err != nil {
			t.Fatalf("ReadUsers: %v", err)
		}
		if len(users) != len(f.Users) {
			t.Errorf("ReadUsers: %d users, want %d", len(users), len(f.Users))
		}
		for name, login := range f.Users {
			u, ok := users[strings.ToLower(login)]
			if !ok {
				t.Errorf("%s (%s) not read", name, login)
				continue
			}
			if u.UUID == "" || u.Email == "" {
				t.Errorf("%s: uuid %q email %q", name, u.UUID, u.Email)
			}
			if want := name == "carol"; u.Disabled != want {
				t.Errorf("%s: Disabled = %v, want %v", name, u.Disabled, want)
			}
		}
		if s.Flavor == ldaptest.Samba {
			// objectGUID as the registry string form.
			if g := users[strings.ToLower(f.Users["alice"])].UUID; len(g) != 36 || strings.Count(g, "-") != 4 || g != strings.ToLower(g) {
				t.Errorf("alice's objectGUID formatted as %q", g)
			}
			if p := users[strings.ToLower(f.Users["bob"])].PrimaryGroupID; p != ridDomainUsers {
				t.Errorf("bob's primaryGroupID = %d, want 513", p)
			}
			if p := users[strings.ToLower(f.Users["outsider"])].PrimaryGroupID; p == ridDomainUsers || p == 0 {
				t.Errorf("outsider's primaryGroupID = %d, want the RID of outgrp", p)
			}
		}
		dave := users[strings.ToLower(f.Users["dave"])]
		inMemberOf := func(u User, group string) bool {
			return slices.ContainsFunc(u.MemberOf, func(dn string) bool { return EqualDN(dn, group) })
		}
		if !inMemberOf(dave, f.Groups["devs"]) {
			t.Errorf("dave's memberOf %v lacks devs", dave.MemberOf)
		}
		if s.Flavor == ldaptest.DS389 && !inMemberOf(dave, f.Groups["staff"]) {
			// 389-ds's MemberOf plugin lists nested groups too.
			t.Errorf("dave's memberOf %v lacks staff (nested)", dave.MemberOf)
		}

		// Groups: the fixture's, with members; on AD also the Builtin\Users
		// chain and Domain Users, once each.
		groups := map[string]Group{}
		if err := l.ReadGroups(ctx, func(g Group) error {
			k := NormalizeDN(g.DN)
			if _, dup := groups[k]; dup {
				t.Errorf("group %s read twice", g.DN)
			}
			groups[k] = g
			return nil
		}); err != nil {
			t.Fatalf("ReadGroups: %v", err)
		}
		for name, dn := range f.Groups {
			g, ok := groups[NormalizeDN(dn)]
			if !ok {
				t.Errorf("group %s (%s) not read", name, dn)
				continue
			}
			if !strings.EqualFold(g.Name, name) {
				t.Errorf("group %s: name %q", dn, g.Name)
			}
		}
		staff := groups[NormalizeDN(f.Groups["staff"])]
		for _, m := range []string{users[strings.ToLower(f.Users["bob"])].DN, f.Groups["devs"]} {
			if !slices.ContainsFunc(staff.Members, func(dn string) bool { return EqualDN(dn, m) }) {
				t.Errorf("staff members %v lack %s", staff.Members, m)
			}
		}
		if s.Flavor == ldaptest.Samba {
			builtin := "CN=Users,CN=Builtin," + s.BaseDN
			if _, ok := groups[NormalizeDN(builtin)]; !ok {
				t.Errorf("ReadGroups on AD lacks %s", builtin)
			}
			var domainUsers *Group
			for _, g := range groups {
				if rid, ok := SIDRID(g.SID); ok && rid == ridDomainUsers {
					domainUsers = &g
				}
			}
			if domainUsers == nil {
				t.Fatal("ReadGroups on AD lacks Domain Users (RID 513)")
			}
			if !slices.ContainsFunc(domainUsers.MemberOf, func(dn string) bool { return EqualDN(dn, builtin) }) &&
				!slices.ContainsFunc(groups[NormalizeDN(builtin)].Members, func(dn string) bool { return EqualDN(dn, domainUsers.DN) }) {
				t.Errorf("Domain Users is not linked to %s in what was read", builtin)
			}
			if rid, ok := SIDRID(staff.SID); !ok || rid != users[strings.ToLower(f.Users["primary"])].PrimaryGroupID {
				t.Errorf("staff SID %q does not match primary's primaryGroupID %d", staff.SID, users[strings.ToLower(f.Users["primary"])].PrimaryGroupID)
			}
		}

		// Logins.
		// 389-ds 53, AD 49/data 533, ppolicy 49 with its accountLocked
		// control on a 000001010000Z lock.
		disabledErr := ErrAccountDisabled
		for _, tc := range []struct {
			name, login, password string
			want                  error
			notFound              bool
		}{
			{"success", f.Users["alice"], ldaptest.Password, nil, false},
			{"special characters in the name", f.Users["star"], ldaptest.Password, nil, false},
			{"wrong password", f.Users["alice"], "Wrong-Pass1", ErrBadCredentials, false},
			{"empty password", f.Users["alice"], "", ErrBadCredentials, false},
			{"unknown user", f.Prefix + "nobody", ldaptest.Password, ErrBadCredentials, true},
			{"disabled user", f.Users["carol"], ldaptest.Password, disabledErr, false},
			{"star", "*", ldaptest.Password, ErrBadCredentials, true},
			{"prefix star", f.Prefix + "*", ldaptest.Password, ErrBadCredentials, true},
			{"parens", "(", ldaptest.Password, ErrBadCredentials, true},
			{"close paren", ")", ldaptest.Password, ErrBadCredentials, true},
			{"backslash", `\`, ldaptest.Password, ErrBadCredentials, true},
			{"NUL", f.Users["alice"] + "\x00", ldaptest.Password, ErrBadCredentials, true},
			{"or-injection", f.Users["alice"] + ")(|(objectClass=*", ldaptest.Password, ErrBadCredentials, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				u, err := l.Authenticate(ctx, tc.login, tc.password)
				if tc.want == nil {
					if err != nil || !strings.EqualFold(u.Username, tc.login) {
						t.Fatalf("Authenticate(%q) = %+v, %v", tc.login, u, err)
					}
					return
				}
				if !errors.Is(err, tc.want) || errors.Is(err, ErrUserNotFound) != tc.notFound || errors.Is(err, ErrUnavailable) {
					t.Fatalf("Authenticate(%q) = %v; want %v (not found: %v)", tc.login, err, tc.want, tc.notFound)
				}
			})
		}

		// LDAPS and StartTLS with the server's CA.
		for _, tr := range []struct {
			name     string
			url      string
			startTLS bool
		}{{"ldaps", s.LDAPSURL, false}, {"starttls", s.URL, true}} {
			cfg := f.Dir
			cfg.URLs, cfg.StartTLS = []string{tr.url}, tr.startTLS
			cfg.TLS.CAFile = s.CAFile
			res, err := openT(t, cfg).Check(ctx)
			if err != nil || res.Users != len(f.Users) {
				t.Errorf("Check over %s: %+v, %v", tr.name, res, err)
			}
		}
	})
}

// TestSambaBig reads the shared Samba's OU=big tree through the AD-limits
// proxy: 1600 users (more than MaxPageSize 1000: paging) and a group of 1600
// members (more than MaxValRange 1500: range retrieval).
func TestSambaBig(t *testing.T) {
	s := ldaptest.SharedSamba(t)
	cfg := ldaptest.BigSambaDirectory(s)
	cfg.GroupNameAttribute = "cn"
	l := openT(t, cfg)
	n := 0
	if err := l.ReadUsers(testCtx(t), func(User) error { n++; return nil }); err != nil || n != ldaptest.BigSambaUsers {
		t.Fatalf("ReadUsers: %d users, %v; want %d", n, err, ldaptest.BigSambaUsers)
	}
	// The server really cuts the list (MaxValRange), so the count below
	// proves range retrieval.
	var ranged string
	if err := l.withConn(testCtx(t), "read_groups", nil, func(c *conn) error {
		req := ldap.NewSearchRequest(ldaptest.BigSambaGroupDN(s), ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, 30, false, "(objectClass=*)", []string{"member"}, nil)
		return l.search(testCtx(t), c, "read_groups", req, 0, func(e *entry) error {
			for _, a := range e.Attrs {
				ranged = a.Name
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if r, ok := parseRange(ranged, "member"); !ok || r.last {
		t.Fatalf("bigstaff's member came back as %q, want a partial range", ranged)
	}
	var big *Group
	if err := l.ReadGroups(testCtx(t), func(g Group) error {
		if EqualDN(g.DN, ldaptest.BigSambaGroupDN(s)) {
			big = &g
		}
		return nil
	}); err != nil {
		t.Fatalf("ReadGroups: %v", err)
	}
	if big == nil {
		t.Fatal("bigstaff not read")
	}
	seen := map[string]bool{}
	for _, m := range big.Members {
		seen[NormalizeDN(m)] = true
	}
	if len(big.Members) != ldaptest.BigSambaGroupMembers || len(seen) != ldaptest.BigSambaGroupMembers {
		t.Fatalf("bigstaff has %d members (%d distinct), want %d through range retrieval", len(big.Members), len(seen), ldaptest.BigSambaGroupMembers)
	}
}
