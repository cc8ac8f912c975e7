package conformance

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// uuidForm is the textual form every flavour's immutable id takes here:
// entryUUID (RFC 4530), ipaUniqueID (FreeIPA writes a lower-case UUID) and
// AD's objectGUID in the registry form. A raw 16-byte GUID read as text, or
// 389-ds's nsUniqueId (four 8-digit groups), would not match.
var uuidForm = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// fixtureMembers is each fixture group's member list by logical name
// ("group:x" for a nested group), per flavour. On AD, setting a user's
// primary group removes the user from that group's member attribute (the
// primary group is implied by primaryGroupID, never listed), so "primary" is
// not in staff and "outsider" not in outgrp.
func fixtureMembers(fl ldaptest.Flavor) map[string][]string {
	m := map[string][]string{
		"admins": {"alice", "frank"},
		"devs":   {"dave"},
		"staff":  {"bob", "carol", "frank", "star", "group:devs"},
		"others": {"erin"},
	}
	if fl == samba {
		m["staff"] = append(m["staff"], "outsider")
		m["outgrp"] = nil
	}
	return m
}

// TestDirectoryRead: ReadUsers and ReadGroups return the fixture as the
// server holds it, with the flavour's id, disabled rule and membership.
func TestDirectoryRead(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		t.Parallel()
		ctx := testCtx(t)
		f := s.NewFixture(t)
		cfg := dirConfig(f)
		users, groups := readAll(t, ctx, openClient(t, cfg))
		admin := s.AdminConn(t)

		var want []string
		for _, login := range f.Users {
			want = append(want, login)
		}
		var got []string
		for name := range users {
			got = append(got, name)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("ReadUsers usernames = %v, want %v", got, want)
		}

		uuids := map[string]string{}
		userDN := map[string]string{} // logical name → DN as read
		for logical, login := range f.Users {
			u := users[login]
			userDN[logical] = u.DN
			if !uuidForm.MatchString(u.UUID) {
				t.Errorf("%s: UUID %q is not in UUID form", logical, u.UUID)
			}
			if raw := rawUUID(t, admin, s.Flavor, u.DN); !strings.EqualFold(u.UUID, raw) {
				t.Errorf("%s: UUID %q, server's %s says %q", logical, u.UUID, cfg.UUIDAttribute, raw)
			}
			if other, dup := uuids[u.UUID]; dup {
				t.Errorf("%s and %s share UUID %s", logical, other, u.UUID)
			}
			uuids[u.UUID] = logical
			if want := login + "@example.com"; u.Email != want {
				t.Errorf("%s: Email %q, want %q", logical, u.Email, want)
			}
			if u.Disabled != (logical == "carol") {
				t.Errorf("%s: Disabled = %v, want %v", logical, u.Disabled, logical == "carol")
			}
			if name, ok := directory.CanonicalName(cfg, u); !ok || name != strings.ToLower(f.Login(logical)) {
				t.Errorf("%s: CanonicalName = %q, %v; want %q", logical, name, ok, strings.ToLower(f.Login(logical)))
			}
		}

		byDN := map[string]directory.Group{}
		for _, g := range groups {
			byDN[directory.NormalizeDN(g.DN)] = g
		}
		isUserDN := map[string]bool{}
		for _, u := range users {
			isUserDN[directory.NormalizeDN(u.DN)] = true
		}
		for group, members := range fixtureMembers(s.Flavor) {
			g, ok := byDN[directory.NormalizeDN(f.Groups[group])]
			if !ok {
				t.Errorf("ReadGroups has no %s (%s)", group, f.Groups[group])
				continue
			}
			var wantM, gotM []string
			for _, m := range members {
				if sub, isGroup := strings.CutPrefix(m, "group:"); isGroup {
					wantM = append(wantM, directory.NormalizeDN(f.Groups[sub]))
				} else {
					wantM = append(wantM, directory.NormalizeDN(userDN[m]))
				}
			}
			for _, m := range g.Members {
				n := directory.NormalizeDN(m)
				gotM = append(gotM, n)
				if _, isGroup := byDN[n]; !isGroup && !isUserDN[n] {
					t.Errorf("%s: member %s is neither a user nor a group the client read", group, m)
				}
			}
			slices.Sort(wantM)
			slices.Sort(gotM)
			if !slices.Equal(gotM, wantM) {
				t.Errorf("%s: members %v, want %v", group, gotM, wantM)
			}
		}

		// memberOf: FreeIPA's MemberOf plugin lists nested groups too; AD
		// lists direct memberships only (nesting is resolved from the
		// group graph); the OpenLDAP fixture reads groups (cn), not memberOf.
		dave := users[f.Users["dave"]].MemberOf
		hasDN := func(list []string, dn string) bool {
			return slices.ContainsFunc(list, func(x string) bool { return directory.EqualDN(x, dn) })
		}
		switch s.Flavor {
		case ds389:
			if !hasDN(dave, f.Groups["devs"]) || !hasDN(dave, f.Groups["staff"]) {
				t.Errorf("389-ds: dave's memberOf %v lacks devs or (nested) staff", dave)
			}
		case samba:
			if !hasDN(dave, f.Groups["devs"]) || hasDN(dave, f.Groups["staff"]) {
				t.Errorf("AD: dave's memberOf %v: want devs, and not staff (AD lists direct memberships)", dave)
			}
			if p := users[f.Users["primary"]]; hasDN(p.MemberOf, f.Groups["staff"]) || p.PrimaryGroupID == 0 || p.PrimaryGroupID == 513 {
				t.Errorf("AD: primary's memberOf %v / primaryGroupID %d: want staff only as the primary group",
					p.MemberOf, p.PrimaryGroupID)
			}
			if u := users[f.Users["bob"]]; u.PrimaryGroupID != 513 {
				t.Errorf("AD: bob's primaryGroupID = %d, want 513 (Domain Users)", u.PrimaryGroupID)
			}
		}

		res, err := openClient(t, cfg).Check(ctx)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if res.Users != len(f.Users) {
			t.Errorf("Check counted %d users, want %d", res.Users, len(f.Users))
		}
		if res.Groups != len(fixtureMembers(s.Flavor)) {
			t.Errorf("Check counted %d groups, want %d", res.Groups, len(fixtureMembers(s.Flavor)))
		}
	})
}

// TestDirectoryAuthenticate is the login bind table: one row per case, the
// flavours it applies to, and the sentinels the result must (not) carry.
func TestDirectoryAuthenticate(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		t.Parallel()
		ctx := testCtx(t)
		f := s.NewFixture(t)
		cfg := dirConfig(f)
		c := openClient(t, cfg)
		p := f.Prefix
		for _, tc := range []struct {
			name     string
			on       flavors
			username string
			password string
			wantUser string  // logical user on success; "" means the call must fail
			wantErr  []error // all must match
			notErr   []error // none may match
		}{
			{"alice with her password", all, f.Users["alice"], ldaptest.Password, "alice", nil, nil},
			{"login name is case-insensitive", all, strings.ToUpper(f.Users["alice"]), ldaptest.Password, "alice", nil, nil},
			{"star user (filter metacharacters in the name) logs in", all, f.Users["star"], ldaptest.Password, "star", nil, nil},
			{"wrong password", all, f.Users["alice"], "not-" + ldaptest.Password, "",
				[]error{directory.ErrBadCredentials}, []error{directory.ErrUserNotFound, directory.ErrAccountDisabled}},
			{"password in the wrong case", all, f.Users["bob"], strings.ToLower(ldaptest.Password), "",
				[]error{directory.ErrBadCredentials}, nil},
			{"unknown user", all, p + "nobody", ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			// OpenLDAP's ppolicy answers a locked account's bind with 49 and,
			// to a client asking for it, the accountLocked control; the
			// lock is 000001010000Z, an administrator's: disabled.
			{"carol disabled: ppolicy 49 with accountLocked", only(openldap), f.Users["carol"], ldaptest.Password, "",
				[]error{directory.ErrAccountDisabled}, []error{directory.ErrUserNotFound, directory.ErrBadCredentials}},
			// AD: 49 with "data 533" in the diagnostic.
			{"carol disabled: AD data 533", only(samba), f.Users["carol"], ldaptest.Password, "",
				[]error{directory.ErrAccountDisabled}, []error{directory.ErrUserNotFound, directory.ErrBadCredentials}},
			// 389-ds: nsAccountLock answers 53 "Account inactivated".
			{"carol disabled: 389-ds result 53", only(ds389), f.Users["carol"], ldaptest.Password, "",
				[]error{directory.ErrAccountDisabled}, []error{directory.ErrUserNotFound, directory.ErrBadCredentials}},
			{"disabled user with a wrong password", only(samba), f.Users["carol"], "wrong", "",
				[]error{directory.ErrBadCredentials}, []error{directory.ErrAccountDisabled}},
			// 389-ds checks nsAccountLock, and slapd's ppolicy its lock,
			// before the password: 53 or the accountLocked control whatever
			// the password, so a locked account shows as such to a caller
			// without its password (the login path answers 401 for it all
			// the same).
			{"disabled user with a wrong password: still disabled", only(ds389, openldap), f.Users["carol"], "wrong", "",
				[]error{directory.ErrAccountDisabled}, []error{directory.ErrBadCredentials}},
			// Filter injection: each name would select alice (or everyone)
			// if the value reached the filter unescaped.
			{"wildcard prefix of alice", all, p + "al*", ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			{"wildcard inside alice", all, p + "a*ce", ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			{"bare wildcard", all, "*", ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			{"filter break-out", all, p + "alice)(objectClass=*", ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			{"or-injection", all, "*)(|(objectClass=*", ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			{"escaped star spelled by the caller", all, p + `al\2a`, ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			// AD and 389-ds end an assertion value at an (escaped) NUL, so
			// unless the client refuses control characters, "alice\x00"
			// finds and binds as alice, and a per-username failure limit
			// keyed by the typed name is dodged with alice, alice\x00, ...
			{"NUL byte", all, f.Users["alice"] + "\x00", ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			{"tab", all, f.Users["alice"] + "\t", ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
			{"NUL byte then another name", all, f.Users["alice"] + "\x00" + f.Users["bob"], ldaptest.Password, "",
				[]error{directory.ErrBadCredentials, directory.ErrUserNotFound}, nil},
		} {
			if !tc.on.has(s.Flavor) {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				u, err := c.Authenticate(ctx, tc.username, tc.password)
				if tc.wantUser != "" {
					if err != nil {
						t.Fatalf("Authenticate(%q) = %v, want success", tc.username, err)
					}
					if u.Username != f.Users[tc.wantUser] {
						t.Fatalf("Authenticate(%q) logged in as %q, want %q", tc.username, u.Username, f.Users[tc.wantUser])
					}
					return
				}
				if err == nil {
					t.Fatalf("Authenticate(%q) succeeded as %q (DN %s), want a refusal", tc.username, u.Username, u.DN)
				}
				for _, w := range tc.wantErr {
					if !errors.Is(err, w) {
						t.Errorf("Authenticate(%q) = %v, want errors.Is %v", tc.username, err, w)
					}
				}
				for _, n := range tc.notErr {
					if errors.Is(err, n) {
						t.Errorf("Authenticate(%q) = %v, must not be %v", tc.username, err, n)
					}
				}
				if errors.Is(err, directory.ErrUnavailable) || errors.Is(err, directory.ErrIncompleteRead) {
					t.Errorf("Authenticate(%q) = %v: a refusal, not a directory failure", tc.username, err)
				}
			})
		}

		// Legacy naming (naming: email): the mail is the login name, and
		// nothing ties it to the login attribute (on AD, sAMAccountName
		// jsmith with mail john.smith@...). Last: it changes alice's mail.
		t.Run("legacy naming: login by mail", func(t *testing.T) {
			u, err := c.FindUser(ctx, f.Users["alice"])
			if err != nil {
				t.Fatal(err)
			}
			mail := "someone.else." + strings.ToLower(p) + "@mail.example.org"
			m := ldap.NewModifyRequest(u.DN, nil)
			m.Replace("mail", []string{mail})
			if err := s.AdminConn(t).Modify(m); err != nil {
				t.Fatalf("set mail: %v", err)
			}
			legacy := cfg.Clone()
			legacy.Naming = config.NamingEmail
			lc := openClient(t, legacy)
			got, err := lc.Authenticate(ctx, strings.ToUpper(mail), ldaptest.Password)
			if err != nil || got.DN != u.DN {
				t.Fatalf("Authenticate(mail) = %+v, %v; want alice", got, err)
			}
			for _, tc := range []struct{ name, pw string }{
				{mail, "not-" + ldaptest.Password},
				{f.Users["alice"], ldaptest.Password}, // the uid is no login name here
				{"*@mail.example.org", ldaptest.Password},
			} {
				if _, err := lc.Authenticate(ctx, tc.name, tc.pw); !errors.Is(err, directory.ErrBadCredentials) {
					t.Errorf("Authenticate(%q) = %v, want ErrBadCredentials", tc.name, err)
				}
			}
		})

		t.Run("empty password refused without I/O", func(t *testing.T) {
			// Against a port nothing listens on, any I/O would end in
			// ErrUnavailable; the refusal must come first.
			dead := cfg.Clone()
			dead.URLs = []string{deadURL(t)}
			for _, name := range []string{f.Users["alice"], p + "nobody"} {
				_, err := openClient(t, dead).Authenticate(ctx, name, "")
				if !errors.Is(err, directory.ErrBadCredentials) || errors.Is(err, directory.ErrUnavailable) {
					t.Errorf("Authenticate(%q, \"\") = %v, want ErrBadCredentials without dialing", name, err)
				}
			}
			// And against the real server, an empty password is never an
			// unauthenticated bind that "succeeds".
			if _, err := c.Authenticate(ctx, f.Users["alice"], ""); !errors.Is(err, directory.ErrBadCredentials) {
				t.Errorf("Authenticate(alice, \"\") = %v, want ErrBadCredentials", err)
			}
		})
	})
}

// TestDirectoryTransports: LDAPS and StartTLS verified against the server's
// own CA (tls.ca_file) on every flavour, reads and a login bind over each;
// and a client without the CA is refused as a TLS failure.
func TestDirectoryTransports(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		t.Parallel()
		ctx := testCtx(t)
		f := s.NewFixture(t)
		for _, tc := range []struct {
			name     string
			url      string
			startTLS bool
			tls      config.TLS
			wantKind string // "" means success
		}{
			{"ldaps with ca_file", s.LDAPSURL, false, config.TLS{CAFile: s.CAFile}, ""},
			{"starttls with ca_file", s.URL, true, config.TLS{CAFile: s.CAFile}, ""},
			{"ldaps without the CA", s.LDAPSURL, false, config.TLS{}, directory.KindTLS},
			{"starttls without the CA", s.URL, true, config.TLS{}, directory.KindTLS},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := dirConfig(f)
				cfg.URLs, cfg.StartTLS, cfg.TLS = []string{tc.url}, tc.startTLS, tc.tls
				c := openClient(t, cfg)
				res, err := c.Check(ctx)
				if tc.wantKind != "" {
					var re *directory.ReadError
					if !errors.As(err, &re) || re.Kind != tc.wantKind || !errors.Is(err, directory.ErrUnavailable) {
						t.Fatalf("Check = %v, want ErrUnavailable of kind %s", err, tc.wantKind)
					}
					return
				}
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if res.Users != len(f.Users) {
					t.Errorf("Check counted %d users, want %d", res.Users, len(f.Users))
				}
				u, err := c.Authenticate(ctx, f.Users["alice"], ldaptest.Password)
				if err != nil || u.Username != f.Users["alice"] {
					t.Fatalf("Authenticate(alice) = %q, %v", u.Username, err)
				}
				if _, err := c.Authenticate(ctx, f.Users["alice"], "wrong"); !errors.Is(err, directory.ErrBadCredentials) {
					t.Errorf("Authenticate(alice, wrong) = %v, want ErrBadCredentials", err)
				}
			})
		}
	})
}

// TestDirectoryReadFromBase reads users and groups from the top of the
// tree rather than the fixture's subtree. On AD a search from the base DN
// also meets continuation references to the other naming contexts (Samba
// answers one for CN=Configuration): SPEC §4 says they are skipped, not a
// failed read.
func TestDirectoryReadFromBase(t *testing.T) {
	ldaptest.Each(t, func(t *testing.T, s *ldaptest.Server) {
		t.Parallel()
		ctx := testCtx(t)
		f := s.NewFixture(t)
		cfg := f.Dir.Clone()
		// An empty users_dn/groups_dn means base_dn, except on freeipa,
		// where it means the type's cn=users/cn=groups,cn=accounts: there
		// the top of the fixtures is cn=accounts.
		cfg.UsersDN, cfg.GroupsDN = "", ""
		if s.Flavor == ds389 {
			cfg.UsersDN, cfg.GroupsDN = "cn=accounts", "cn=accounts"
		}
		if s.Flavor == samba {
			// The shared domain holds thousands of other users (OU=big,
			// other tests' fixtures): the filters keep the read to this
			// fixture while the search still starts at the base DN.
			cfg.UserFilter = "(sAMAccountName=" + f.Prefix + "*)"
			cfg.GroupObjectFilter = "(&(objectClass=group)(sAMAccountName=" + f.Prefix + "*))"
		}
		cfg.ID = 1
		cfg.ApplyDefaults()
		users, groups := readAll(t, ctx, openClient(t, cfg))
		for logical, login := range f.Users {
			if _, ok := users[login]; !ok {
				t.Errorf("read from %s lacks %s (%s)", cfg.BaseDN, logical, login)
			}
		}
		found := 0
		for _, g := range groups {
			for _, dn := range f.Groups {
				if directory.EqualDN(g.DN, dn) {
					found++
				}
			}
		}
		if found != len(f.Groups) {
			t.Errorf("read from %s found %d of the fixture's %d groups", cfg.BaseDN, found, len(f.Groups))
		}
	})
}

// TestFreeIPALockValues: FreeIPA writes nsAccountLock TRUE, but the
// attribute is a string compared case-insensitively by 389-ds; "false"
// (what ipa user-enable may leave behind) is not a lock.
func TestFreeIPALockValues(t *testing.T) {
	s := ldaptest.Shared389(t)
	t.Parallel()
	ctx := testCtx(t)
	f := s.NewFixture(t)
	cfg := dirConfig(f)
	c := openClient(t, cfg)
	for _, tc := range []struct {
		value    string
		disabled bool
	}{{"true", true}, {"True", true}, {"false", false}, {"FALSE", false}} {
		t.Run(tc.value, func(t *testing.T) {
			users, _ := readAll(t, ctx, c)
			dn := users[f.Users["bob"]].DN
			req := ldap.NewModifyRequest(dn, nil)
			req.Replace("nsAccountLock", []string{tc.value})
			if err := s.AdminConn(t).Modify(req); err != nil {
				t.Fatal(err)
			}
			users, _ = readAll(t, ctx, c)
			if got := users[f.Users["bob"]].Disabled; got != tc.disabled {
				t.Errorf("nsAccountLock %q: Disabled = %v, want %v", tc.value, got, tc.disabled)
			}
			_, err := c.Authenticate(ctx, f.Users["bob"], ldaptest.Password)
			if tc.disabled != errors.Is(err, directory.ErrAccountDisabled) || (!tc.disabled && err != nil) {
				t.Errorf("nsAccountLock %q: Authenticate = %v, want disabled %v", tc.value, err, tc.disabled)
			}
		})
	}
}
