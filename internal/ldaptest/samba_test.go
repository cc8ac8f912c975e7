package ldaptest

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func TestSambaEnvFromGetenv(t *testing.T) {
	full := map[string]string{
		sambaEnvURL:           "ldap://127.0.0.1:389",
		sambaEnvLDAPSURL:      "ldaps://127.0.0.1:636",
		sambaEnvCA:            "/x/ca.pem",
		sambaEnvTLSCert:       "/x/server.pem",
		sambaEnvTLSKey:        "/x/server.key",
		sambaEnvBase:          "DC=example,DC=com",
		sambaEnvAdminDN:       "CN=Administrator,CN=Users,DC=example,DC=com",
		sambaEnvAdminPassword: "pw",
	}
	tests := []struct {
		name    string
		unset   []string
		missing []string
	}{
		{"complete", nil, nil},
		{"no url", []string{sambaEnvURL}, []string{sambaEnvURL}},
		{"no key nor password", []string{sambaEnvTLSKey, sambaEnvAdminPassword}, []string{sambaEnvTLSKey, sambaEnvAdminPassword}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, missing := sambaEnvFromGetenv(func(k string) string {
				if slices.Contains(tt.unset, k) {
					return ""
				}
				return full[k]
			})
			if !slices.Equal(missing, tt.missing) {
				t.Fatalf("missing = %v, want %v", missing, tt.missing)
			}
			if tt.missing == nil && (env.url != full[sambaEnvURL] || env.key != full[sambaEnvTLSKey] || env.base != full[sambaEnvBase]) {
				t.Fatalf("env = %+v", env)
			}
		})
	}
}

func TestSambaSIDRID(t *testing.T) {
	// S-1-5-21-1-2-3-513 and a truncated copy.
	sid := []byte{1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 1, 2, 0, 0}
	tests := []struct {
		name    string
		sid     []byte
		want    uint32
		wantErr bool
	}{
		{"domain users", sid, 513, false},
		{"truncated", sid[:len(sid)-1], 0, true},
		{"empty", nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SambaSIDRID(tt.sid)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("SambaSIDRID = %d, %v; want %d, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// sambaRawURL is Samba's own plain URL, bypassing the proxy.
func sambaRawURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv(sambaEnvURL)
	if u == "" {
		t.Fatal("no " + sambaEnvURL)
	}
	return u
}

// The OU=big tree through SharedSamba holds more users than one search may
// return: only paging gets them all, as on a real AD.
func TestSambaBigTreeNeedsPaging(t *testing.T) {
	s := SharedSamba(t)
	c := s.AdminConn(t)
	base := "OU=big," + s.BaseDN
	filter := "(&(objectCategory=person)(objectClass=user))"
	newReq := func(sizeLimit int) *ldap.SearchRequest {
		return ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			sizeLimit, 0, false, filter, []string{"sAMAccountName"}, nil)
	}

	t.Run("non-paged search stops at MaxPageSize", func(t *testing.T) {
		res, err := c.Search(newReq(0))
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
			t.Fatalf("err = %v, want sizeLimitExceeded", err)
		}
		if res == nil || len(res.Entries) != ADMaxPageSize {
			t.Fatalf("got %d entries, want %d", sambaCount(res), ADMaxPageSize)
		}
	})
	t.Run("client size limit below MaxPageSize", func(t *testing.T) {
		res, err := c.Search(newReq(7))
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) || sambaCount(res) != 7 {
			t.Fatalf("got %d entries, err %v; want 7, sizeLimitExceeded", sambaCount(res), err)
		}
	})
	t.Run("paged search returns every user", func(t *testing.T) {
		res, err := c.SearchWithPaging(newReq(0), ADMaxPageSize)
		if err != nil {
			t.Fatalf("paged search: %v", err)
		}
		seen := map[string]bool{}
		for _, e := range res.Entries {
			seen[e.GetAttributeValue("sAMAccountName")] = true
		}
		if len(seen) != BigSambaUsers || !seen[BigSambaLogin(0)] || !seen[BigSambaLogin(BigSambaUsers-1)] {
			t.Fatalf("paged search saw %d distinct users, want %d incl. first and last", len(seen), BigSambaUsers)
		}
	})
	t.Run("pages larger than MaxPageSize are cut", func(t *testing.T) {
		paging := ldap.NewControlPaging(1500)
		res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, 0, false, filter, []string{"sAMAccountName"}, []ldap.Control{paging}))
		if err != nil {
			t.Fatalf("first page: %v", err)
		}
		cookie := ldap.FindControl(res.Controls, ldap.ControlTypePaging)
		if len(res.Entries) != ADMaxPageSize || cookie == nil || len(cookie.(*ldap.ControlPaging).Cookie) == 0 {
			t.Fatalf("first page of 1500 asked: %d entries, cookie %v; want %d and a cookie",
				len(res.Entries), cookie, ADMaxPageSize)
		}
	})
	t.Run("samba alone does not limit", func(t *testing.T) {
		// Why the limiting proxy (samba_adlimits.go) exists: straight to
		// Samba, a non-paged search returns every user. Should a Samba
		// start enforcing AD's MaxPageSize itself, this fails: the proxy
		// would then be redundant, and the limit tests above would no
		// longer show that it is the proxy that limits.
		raw := dialT(t, sambaRawURL(t))
		if err := raw.Bind(s.AdminDN, s.AdminPassword); err != nil {
			t.Fatalf("bind: %v", err)
		}
		res, err := raw.Search(newReq(0))
		if err != nil || sambaCount(res) != BigSambaUsers {
			t.Fatalf("non-paged search straight to Samba: %d entries, err %v; want all %d, no error",
				sambaCount(res), err, BigSambaUsers)
		}
	})
}

func sambaCount(res *ldap.SearchResult) int {
	if res == nil {
		return 0
	}
	return len(res.Entries)
}

// bigstaff has more members than one read returns: the reply names a range
// and the client must ask for the rest.
func TestSambaBigGroupNeedsRangeRetrieval(t *testing.T) {
	s := SharedSamba(t)
	c := s.AdminConn(t)
	dn := BigSambaGroupDN(s)
	last := strconv.Itoa(ADMaxValRange-1) + "-*"
	tests := []struct {
		ask, wantName string
		wantCount     int
	}{
		{"member", "member;range=0-" + strconv.Itoa(ADMaxValRange-1), ADMaxValRange},
		{"member;range=0-*", "member;range=0-" + strconv.Itoa(ADMaxValRange-1), ADMaxValRange},
		{"member;range=" + strconv.Itoa(ADMaxValRange) + "-*", "member;range=" + strconv.Itoa(ADMaxValRange) + "-*",
			BigSambaGroupMembers - ADMaxValRange},
		{"member;range=" + last, "member;range=" + last, BigSambaGroupMembers - ADMaxValRange + 1},
	}
	for _, tt := range tests {
		t.Run(tt.ask, func(t *testing.T) {
			res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
				0, 0, false, "(objectClass=*)", []string{tt.ask}, nil))
			if err != nil || len(res.Entries) != 1 {
				t.Fatalf("read %s: %v", tt.ask, err)
			}
			var names []string
			for _, a := range res.Entries[0].Attributes {
				names = append(names, a.Name)
				if a.Name == tt.wantName && len(a.Values) != tt.wantCount {
					t.Fatalf("%s: %d values, want %d", a.Name, len(a.Values), tt.wantCount)
				}
			}
			if !slices.Contains(names, tt.wantName) {
				t.Fatalf("asked %s, got attributes %v; want %s", tt.ask, names, tt.wantName)
			}
		})
	}
}

func TestSambaFixtureBinds(t *testing.T) {
	s := SharedSamba(t)
	f := s.NewFixture(t)
	tests := []struct {
		name     string
		user     string // logical
		password string
		byUPN    bool
		code     uint16 // 0: success
		subcode  string // AD's "data NNN" in the diagnostic message
	}{
		{"alice by DN", "alice", Password, false, 0, ""},
		{"alice by UPN", "alice", Password, true, 0, ""},
		{"star with parentheses", "star", Password, true, 0, ""},
		{"primary", "primary", Password, true, 0, ""},
		{"wrong password", "bob", "wrong-Pass1", true, ldap.LDAPResultInvalidCredentials, "data 52e"},
		{"disabled carol", "carol", Password, true, ldap.LDAPResultInvalidCredentials, "data 533"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialT(t, s.URL)
			who := f.userDN(tt.user)
			if tt.byUPN {
				who = f.Login(tt.user)
			}
			err := c.Bind(who, tt.password)
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("bind %s: %v", who, err)
				}
				return
			}
			var lerr *ldap.Error
			if !errors.As(err, &lerr) || lerr.ResultCode != tt.code {
				t.Fatalf("bind %s: %v, want result %d", who, err, tt.code)
			}
			if !strings.Contains(err.Error(), tt.subcode) {
				t.Fatalf("bind %s: %q lacks %q", who, err, tt.subcode)
			}
		})
	}
}

func TestSambaTLS(t *testing.T) {
	s := SharedSamba(t)
	good := s.TLSConfig(t)
	testTLS(t, s, []tlsCase{
		{"ldaps with CA", s.LDAPSURL, false, good, false},
		{"starttls with CA", s.URL, true, good, false},
		{"ldaps without CA", s.LDAPSURL, false, &tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, true},
		{"samba's own ldaps with CA", os.Getenv(sambaEnvLDAPSURL), false, good, false},
		{"samba's own starttls with CA", sambaRawURL(t), true, good, false},
	})
}

// The AD-only fixture users carry the group shapes rule 2 must handle.
func TestSambaFixtureGroupShapes(t *testing.T) {
	s := SharedSamba(t)
	f := s.NewFixture(t)
	c := s.AdminConn(t)
	domainUsers := "CN=Domain Users,CN=Users," + s.BaseDN
	builtinUsers := "CN=Users,CN=Builtin," + s.BaseDN
	rid := func(dn string) string {
		r, err := sambaRID(c, dn)
		if err != nil {
			t.Fatal(err)
		}
		return strconv.FormatUint(uint64(r), 10)
	}
	// inChain: users of the fixture reaching Builtin\Users through memberOf,
	// nesting included (not through the primary group: AD's in-chain rule
	// does not follow primaryGroupID).
	res, err := c.Search(ldap.NewSearchRequest(f.usersDN(), ldap.ScopeWholeSubtree,
		ldap.NeverDerefAliases, 0, 0, false,
		"(memberOf:1.2.840.113556.1.4.1941:="+ldap.EscapeFilter(builtinUsers)+")", []string{"sAMAccountName"}, nil))
	if err != nil {
		t.Fatalf("in-chain search: %v", err)
	}
	var inChain []string
	for _, e := range res.Entries {
		inChain = append(inChain, e.GetAttributeValue("sAMAccountName"))
	}

	tests := []struct {
		user          string
		primary       string // expected primaryGroupID
		memberOf      []string
		notMemberOf   []string
		reachesByLink bool // in Builtin\Users through memberOf
	}{
		{"bob", "513", []string{f.Groups["staff"]}, []string{domainUsers}, false},
		{"dave", "513", []string{f.Groups["devs"]}, []string{f.Groups["staff"], domainUsers}, false},
		{"outsider", rid(f.Groups["outgrp"]), []string{f.Groups["staff"]}, []string{domainUsers, f.Groups["outgrp"]}, false},
		{"primary", rid(f.Groups["staff"]), []string{domainUsers}, []string{f.Groups["staff"]}, true},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			e := readEntry(t, c, f.userDN(tt.user), "memberOf", "primaryGroupID")
			if got := e.GetAttributeValue("primaryGroupID"); got != tt.primary {
				t.Errorf("primaryGroupID = %s, want %s", got, tt.primary)
			}
			mo := e.GetAttributeValues("memberOf")
			for _, g := range tt.memberOf {
				if !sambaContainsFold(mo, g) {
					t.Errorf("memberOf %v lacks %s", mo, g)
				}
			}
			for _, g := range tt.notMemberOf {
				if sambaContainsFold(mo, g) {
					t.Errorf("memberOf %v has %s", mo, g)
				}
			}
			if got := slices.Contains(inChain, f.Users[tt.user]); got != tt.reachesByLink {
				t.Errorf("in Builtin\\Users by memberOf chain = %v, want %v", got, tt.reachesByLink)
			}
		})
	}
	// outgrp, outsider's primary group, must not lead to Builtin\Users.
	res, err = c.Search(ldap.NewSearchRequest(f.Groups["outgrp"], ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(memberOf:1.2.840.113556.1.4.1941:="+ldap.EscapeFilter(builtinUsers)+")", []string{"dn"}, nil))
	if err != nil || len(res.Entries) != 0 {
		t.Fatalf("outgrp in Builtin\\Users chain: %d entries, %v", sambaCount(res), err)
	}
	// Domain Users, every other user's primary group, must.
	res, err = c.Search(ldap.NewSearchRequest(domainUsers, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(memberOf:1.2.840.113556.1.4.1941:="+ldap.EscapeFilter(builtinUsers)+")", []string{"dn"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("Domain Users in Builtin\\Users chain: %d entries, %v", sambaCount(res), err)
	}
}

func sambaContainsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(v string) bool { return strings.EqualFold(v, s) })
}

func TestSambaFixtureChanges(t *testing.T) {
	s := SharedSamba(t)
	f := s.NewFixture(t)
	admin := s.AdminConn(t)
	bind := func(name string) error {
		c := dialT(t, s.URL)
		return c.Bind(f.Login(name), Password)
	}
	memberOf := func(name string) []string {
		return readEntry(t, admin, f.userDN(name), "memberOf").GetAttributeValues("memberOf")
	}

	f.AddUser(t, "gina", "staff", "admins")
	if err := bind("gina"); err != nil {
		t.Fatalf("new user bind: %v", err)
	}
	if mo := memberOf("gina"); !sambaContainsFold(mo, f.Groups["staff"]) || !sambaContainsFold(mo, f.Groups["admins"]) {
		t.Fatalf("gina memberOf %v", mo)
	}

	f.SetDisabled(t, "gina", true)
	if err := bind("gina"); err == nil || !strings.Contains(err.Error(), "data 533") {
		t.Fatalf("disabled bind: %v, want data 533", err)
	}
	f.SetDisabled(t, "gina", false)
	if err := bind("gina"); err != nil {
		t.Fatalf("re-enabled bind: %v", err)
	}

	f.RemoveMember(t, "admins", "gina")
	f.AddMember(t, "others", "gina")
	mo := memberOf("gina")
	if sambaContainsFold(mo, f.Groups["admins"]) || !sambaContainsFold(mo, f.Groups["others"]) {
		t.Fatalf("after moves memberOf %v", mo)
	}

	f.DeleteUser(t, "gina")
	res, err := admin.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, "(sAMAccountName="+ldap.EscapeFilter(f.Users["gina"])+")", []string{"dn"}, nil))
	if err != nil || len(res.Entries) != 0 {
		t.Fatalf("deleted user still found: %d, %v", sambaCount(res), err)
	}
}

// close ends a proxy's listeners and open sessions and leaves no goroutine
// behind (the shared proxy lives for the whole test binary; this one does
// not).
func TestSambaADLimitsProxyClose(t *testing.T) {
	s := SharedSamba(t)
	env, _ := sambaEnvFromGetenv(os.Getenv)
	ops, err := newSambaOps(env)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(env.cert, env.key)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	p, err := startSambaADLimitsProxy(ops.upstreamAddr, ops.tls,
		&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	c := dialT(t, p.url())
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		p.close()
		t.Fatalf("bind through a fresh proxy: %v", err)
	}
	p.close()
	p.close() // twice is fine
	if _, err := c.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", []string{"dn"}, nil)); err == nil {
		t.Fatal("search on a session of a closed proxy succeeded")
	}
	if c2, err := net.DialTimeout("tcp", strings.TrimPrefix(p.url(), "ldap://"), time.Second); err == nil {
		_ = c2.Close()
		t.Fatal("closed proxy still accepts connections")
	}
	_ = c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after close, %d before start", n, before)
	}
}

func TestSambaSetLocked(t *testing.T) {
	s := SharedSamba(t)
	f := s.NewFixture(t)
	admin := s.AdminConn(t)
	bind := func() error {
		c := dialT(t, s.URL)
		return c.Bind(f.Login("bob"), Password)
	}
	uac := func() string {
		return readEntry(t, admin, f.userDN("bob"), "userAccountControl").GetAttributeValue("userAccountControl")
	}

	SambaSetLocked(t, f, "bob", true)
	err := bind()
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) || !strings.Contains(err.Error(), "data 775") {
		t.Fatalf("locked bind with the right password: %v, want 49 data 775", err)
	}
	if got := uac(); got != strconv.Itoa(sambaUACNormalAccount) {
		t.Fatalf("locked user's userAccountControl = %s, want %d (lockout is not disable)", got, sambaUACNormalAccount)
	}
	SambaSetLocked(t, f, "bob", false)
	if err := bind(); err != nil {
		t.Fatalf("unlocked bind: %v", err)
	}
	// The PSO stays: a single wrong password locks bob again.
	SambaSetLocked(t, f, "bob", true)
	if err := bind(); err == nil || !strings.Contains(err.Error(), "data 775") {
		t.Fatalf("relocked bind: %v, want data 775", err)
	}
}
