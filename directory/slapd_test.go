package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
	"github.com/ldapgate/ldapgate/metrics"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wrongCA writes a freshly generated CA certificate that signed nothing.
func wrongCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "wrong-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSlapdTransports(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	bad := wrongCA(t)
	for _, tc := range []struct {
		name     string
		url      string
		startTLS bool
		tls      config.TLS
		wantKind string // "" means success
	}{
		{"plain", s.URL, false, config.TLS{}, ""},
		{"starttls with ca_file", s.URL, true, config.TLS{CAFile: s.CAFile}, ""},
		{"ldaps with ca_file", s.LDAPSURL, false, config.TLS{CAFile: s.CAFile}, ""},
		{"starttls, wrong CA refused", s.URL, true, config.TLS{CAFile: bad}, KindTLS},
		{"ldaps, wrong CA refused", s.LDAPSURL, false, config.TLS{CAFile: bad}, KindTLS},
		{"ldaps, system roots refuse the test CA", s.LDAPSURL, false, config.TLS{}, KindTLS},
		{"ldaps, explicit insecure_skip_verify", s.LDAPSURL, false, config.TLS{InsecureSkipVerify: true}, ""},
		{"ldaps on the plain port fails", "ldaps://" + strings.TrimPrefix(s.URL, "ldap://"), false, config.TLS{CAFile: s.CAFile}, KindTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.Dir
			cfg.URLs, cfg.StartTLS, cfg.TLS = []string{tc.url}, tc.startTLS, tc.tls
			cfg.ConnectTimeout = config.Duration(5 * time.Second)
			l := openT(t, cfg)
			res, err := l.Check(testCtx(t))
			if tc.wantKind != "" {
				var re *ReadError
				if !errors.As(err, &re) || re.Kind != tc.wantKind || !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Check = %v, want ErrUnavailable of kind %q", err, tc.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if res.URL != tc.url || res.Users != len(f.Users) || res.Groups != len(f.Groups) {
				t.Fatalf("Check = %+v, want url %s, %d users, %d groups", res, tc.url, len(f.Users), len(f.Groups))
			}
			// A login goes over the same transport on its own connection.
			if _, err := l.Authenticate(testCtx(t), f.Users["alice"], ldaptest.Password); err != nil {
				t.Fatalf("Authenticate over %s: %v", tc.name, err)
			}
		})
	}
}

func TestSlapdFailover(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	cfg := f.Dir
	cfg.URLs = []string{deadURL(t), s.URL}
	l := openT(t, cfg)
	res, err := l.Check(testCtx(t))
	if err != nil || res.URL != s.URL {
		t.Fatalf("Check with a dead first URL = %+v, %v; want success on %s", res, err, s.URL)
	}
	n := 0
	if err := l.ReadUsers(testCtx(t), func(User) error { n++; return nil }); err != nil || n != len(f.Users) {
		t.Fatalf("ReadUsers with a dead first URL: %d users, %v", n, err)
	}
	if _, err := l.Authenticate(testCtx(t), f.Users["bob"], ldaptest.Password); err != nil {
		t.Fatalf("Authenticate with a dead first URL: %v", err)
	}

	cfg.URLs = []string{deadURL(t), deadURL(t)}
	dead := openT(t, cfg)
	_, err = dead.Check(testCtx(t))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "all 2 servers failed") {
		t.Fatalf("Check with every URL dead = %v, want ErrUnavailable naming both", err)
	}

	// A wrong service password is its own kind, not "server down".
	cfg.URLs = []string{s.URL}
	cfg.BindPassword = config.Secret("wrong")
	wrong := openT(t, cfg)
	_, err = wrong.Check(testCtx(t))
	var re *ReadError
	if !errors.As(err, &re) || re.Kind != KindBindRefused || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("Check with a wrong service password = %v, want kind %q without the password", err, KindBindRefused)
	}
}

func TestSlapdReadUsersAndGroups(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	if f.Dir.PageSize >= len(f.Users) || len(f.Users) <= ldaptest.SlapdSizeLimit {
		t.Fatalf("fixture does not force paging: page %d, %d users, size limit %d", f.Dir.PageSize, len(f.Users), ldaptest.SlapdSizeLimit)
	}
	m := metrics.New()
	l, err := Open(f.Dir, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	users := map[string]User{}
	if err := l.ReadUsers(testCtx(t), func(u User) error { users[u.Username] = u; return nil }); err != nil {
		t.Fatalf("ReadUsers: %v", err)
	}
	if len(users) != len(f.Users) {
		t.Fatalf("ReadUsers returned %d users, want %d (paging past the size limit of %d)", len(users), len(f.Users), ldaptest.SlapdSizeLimit)
	}
	uuids := map[string]bool{}
	for name, login := range f.Users {
		u, ok := users[login]
		if !ok {
			t.Fatalf("user %s (%s) missing", name, login)
		}
		if u.UUID == "" || uuids[u.UUID] {
			t.Errorf("%s: uuid %q empty or duplicated", name, u.UUID)
		}
		uuids[u.UUID] = true
		if u.Email != login+"@example.com" || u.DisplayName != login || u.DN == "" {
			t.Errorf("%s: %+v", name, u)
		}
		if want := name == "carol"; u.Disabled != want {
			t.Errorf("%s: Disabled = %v, want %v (pwdAccountLockedTime)", name, u.Disabled, want)
		}
	}
	staff := f.Groups["staff"]
	if !slices.ContainsFunc(users[f.Users["bob"]].MemberOf, func(dn string) bool { return EqualDN(dn, staff) }) {
		t.Errorf("bob's memberOf %v lacks %s", users[f.Users["bob"]].MemberOf, staff)
	}

	groups := map[string]Group{}
	if err := l.ReadGroups(testCtx(t), func(g Group) error { groups[NormalizeDN(g.DN)] = g; return nil }); err != nil {
		t.Fatalf("ReadGroups: %v", err)
	}
	if len(groups) != len(f.Groups) {
		t.Fatalf("ReadGroups returned %d groups, want %d", len(groups), len(f.Groups))
	}
	g := groups[NormalizeDN(staff)]
	if g.Name != "staff" {
		t.Fatalf("staff group = %+v", g)
	}
	for _, member := range []string{users[f.Users["bob"]].DN, users[f.Users["star"]].DN, f.Groups["devs"]} {
		if !slices.ContainsFunc(g.Members, func(dn string) bool { return EqualDN(dn, member) }) {
			t.Errorf("staff members %v lack %s", g.Members, member)
		}
	}
	if ops := observedOps(t, m); !ops["read_users"] || !ops["read_groups"] {
		t.Errorf("ldap_operation_duration_seconds observed %v, want read_users and read_groups", ops)
	}

	// The callback's error stops the read and comes back as is.
	stop := errors.New("enough")
	calls := 0
	err = l.ReadUsers(testCtx(t), func(User) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("ReadUsers with a failing callback = %v after %d calls, want the callback's error after 1", err, calls)
	}
	// ... and the pooled connection is still good for the next read.
	n := 0
	if err := l.ReadUsers(testCtx(t), func(User) error { n++; return nil }); err != nil || n != len(f.Users) {
		t.Fatalf("ReadUsers after an abandoned read: %d users, %v", n, err)
	}
}

func TestSlapdDisabledFilter(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	cfg := f.Dir
	cfg.DisabledFilter = "(|(uid=" + ldap.EscapeFilter(f.Users["bob"]) + ")(uid=" + ldap.EscapeFilter(f.Users["star"]) + "))"
	l := openT(t, cfg)
	got := map[string]bool{}
	if err := l.ReadUsers(testCtx(t), func(u User) error { got[u.Username] = u.Disabled; return nil }); err != nil {
		t.Fatal(err)
	}
	for name, login := range f.Users {
		// disabled_filter replaces the type's rule: carol's ppolicy lock no
		// longer counts, bob and st*r are disabled.
		if want := name == "bob" || name == "star"; got[login] != want {
			t.Errorf("%s: Disabled = %v, want %v", name, got[login], want)
		}
	}
	for name, want := range map[string]bool{"bob": true, "alice": false, "carol": false} {
		u, err := l.FindUser(testCtx(t), f.Users[name])
		if err != nil || u.Disabled != want {
			t.Errorf("FindUser(%s) = Disabled %v, %v; want %v", name, u.Disabled, err, want)
		}
	}
}

func TestSlapdNonPagedReadHitsLimit(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	l := openT(t, f.Dir)
	calls := 0
	err := l.withConn(testCtx(t), "read_users", nil, func(c *conn) error {
		req := ldap.NewSearchRequest(l.s.usersBase, ldap.ScopeWholeSubtree, ldap.DerefAlways,
			0, 10, false, l.s.userSearchFilter(""), l.s.userAttributes(), nil)
		return l.search(testCtx(t), c, "read_users", req, 0, func(*entry) error { calls++; return nil })
	})
	var re *ReadError
	if !errors.As(err, &re) || !errors.Is(err, ErrIncompleteRead) || re.Kind != KindSizeLimit || re.Code != 4 {
		t.Fatalf("non-paged read = %v, want ErrIncompleteRead size_limit_exceeded (4)", err)
	}
	if calls != 0 {
		t.Fatalf("a failed non-paged read handed %d entries to the caller", calls)
	}
}

func TestSlapdAuthenticate(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	l := openT(t, f.Dir)
	star := f.Users["star"]
	if !strings.Contains(star, "*") {
		t.Fatalf("fixture user star is %q, want a '*' in it", star)
	}
	for _, tc := range []struct {
		name, login, password string
		want                  error // nil: success
		notFound              bool
	}{
		{"success", f.Users["alice"], ldaptest.Password, nil, false},
		{"uid with a star logs in", star, ldaptest.Password, nil, false},
		{"login is case-insensitive like uid", strings.ToUpper(f.Users["alice"]), ldaptest.Password, nil, false},
		{"wrong password", f.Users["alice"], "nope", ErrBadCredentials, false},
		{"empty password", f.Users["alice"], "", ErrBadCredentials, false},
		{"unknown user", f.Prefix + "nobody", ldaptest.Password, ErrBadCredentials, true},
		{"locked user (ppolicy)", f.Users["carol"], ldaptest.Password, ErrAccountDisabled, false},
		// Injection: every fixture user has this password, so a filter
		// that matched anyone would log in as them.
		{"star", "*", ldaptest.Password, ErrBadCredentials, true},
		{"prefix star", f.Prefix + "*", ldaptest.Password, ErrBadCredentials, true},
		{"open paren", "(", ldaptest.Password, ErrBadCredentials, true},
		{"close paren", ")", ldaptest.Password, ErrBadCredentials, true},
		{"backslash", `\`, ldaptest.Password, ErrBadCredentials, true},
		{"NUL", f.Users["alice"] + "\x00", ldaptest.Password, ErrBadCredentials, true},
		{"or-injection", f.Users["alice"] + ")(uid=*", ldaptest.Password, ErrBadCredentials, true},
		{"trailing space is another name", f.Users["alice"] + " ", ldaptest.Password, ErrBadCredentials, true},
		{"tab", f.Users["alice"] + "\t", ldaptest.Password, ErrBadCredentials, true},
		{"wildcard injection", "*)(uid=*))(|(uid=*", ldaptest.Password, ErrBadCredentials, true},
		{"pre-escaped star is literal", strings.ReplaceAll(star, "*", `\2a`), ldaptest.Password, ErrBadCredentials, true},
		{"star as a wildcard of st*r", strings.ReplaceAll(star, "*", ""), ldaptest.Password, ErrBadCredentials, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := l.Authenticate(testCtx(t), tc.login, tc.password)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Authenticate(%q) = %v", tc.login, err)
				}
				if !strings.EqualFold(u.Username, tc.login) || u.DN == "" || u.UUID == "" || len(u.MemberOf) == 0 {
					t.Fatalf("Authenticate(%q) returned %+v", tc.login, u)
				}
				return
			}
			if !errors.Is(err, tc.want) || errors.Is(err, ErrUserNotFound) != tc.notFound || errors.Is(err, ErrUnavailable) {
				t.Fatalf("Authenticate(%q) = %v; want %v (not found: %v)", tc.login, err, tc.want, tc.notFound)
			}
		})
	}

	// FindUser is the search alone.
	if u, err := l.FindUser(testCtx(t), star); err != nil || u.Username != star {
		t.Fatalf("FindUser(%q) = %+v, %v", star, u, err)
	}
	if _, err := l.FindUser(testCtx(t), "*"); !errors.Is(err, ErrUserNotFound) || errors.Is(err, ErrBadCredentials) {
		t.Fatalf("FindUser(*) = %v, want ErrUserNotFound only", err)
	}

	// Two entries with one login name: refuse, never pick one.
	f.AddUser(t, "twin")
	c := s.AdminConn(t)
	dup := ldap.NewAddRequest("uid="+f.Users["twin"]+",ou=groups,ou="+f.Prefix+","+s.BaseDN, nil)
	dup.Attribute("objectClass", []string{"inetOrgPerson"})
	dup.Attribute("uid", []string{f.Users["twin"]})
	dup.Attribute("cn", []string{"twin"})
	dup.Attribute("sn", []string{"twin"})
	if err := c.Add(dup); err != nil {
		t.Fatal(err)
	}
	cfg := f.Dir
	cfg.UsersDN = "ou=" + f.Prefix // both entries are under the fixture root
	wide := openT(t, cfg)
	if _, err := wide.Authenticate(testCtx(t), f.Users["twin"], ldaptest.Password); !errors.Is(err, ErrBadCredentials) || !errors.Is(err, ErrAmbiguousUser) {
		t.Fatalf("ambiguous login = %v, want ErrBadCredentials and ErrAmbiguousUser", err)
	}
}

func TestSlapdStoppedMidSearch(t *testing.T) {
	s := ldaptest.StartSlapdWith(t, ldaptest.SlapdOptions{BulkUsers: 1000})
	cfg := ldaptest.BulkDirectory(s)
	cfg.PageSize = 50
	cfg.Timeout = config.Duration(5 * time.Second)
	l := openT(t, cfg)
	n := 0
	start := time.Now()
	err := l.ReadUsers(testCtx(t), func(User) error {
		n++
		if n == 60 { // inside the second page: more pages to come
			s.Stop()
		}
		return nil
	})
	if err == nil {
		t.Fatalf("ReadUsers returned success after %d of 1000 users with the server stopped", n)
	}
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrIncompleteRead) {
		t.Fatalf("ReadUsers with the server stopped = %v, want ErrUnavailable", err)
	}
	t.Logf("after %d users: %v", n, err)
	if n >= 1000 {
		t.Fatalf("all %d users delivered although the server was stopped", n)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("took %v: the lost connection was noticed only by a timeout", d)
	}
	// The dead pooled connection is not reused: the next call dials again
	// and reports the server down.
	if _, err := l.FindUser(testCtx(t), "bulk00001"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("FindUser after the stop = %v, want ErrUnavailable", err)
	}
}

func TestSlapdDeadIdleConnectionRetried(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	l := openT(t, f.Dir)
	if _, err := l.FindUser(testCtx(t), f.Users["alice"]); err != nil {
		t.Fatal(err)
	}
	// The server (or a firewall) dropped the idle connection without us
	// noticing: the socket is gone, the pool still holds it.
	l.pool.mu.Lock()
	if len(l.pool.idle) != 1 {
		l.pool.mu.Unlock()
		t.Fatalf("%d idle connections, want 1", len(l.pool.idle))
	}
	_ = l.pool.idle[0].nc.Close()
	l.pool.mu.Unlock()
	if u, err := l.FindUser(testCtx(t), f.Users["bob"]); err != nil || u.Username != f.Users["bob"] {
		t.Fatalf("FindUser on a dead idle connection = %+v, %v; want a retry on a new one", u, err)
	}
	n := 0
	_ = l.pool.idle[0].nc.Close()
	if err := l.ReadUsers(testCtx(t), func(User) error { n++; return nil }); err != nil || n != len(f.Users) {
		t.Fatalf("ReadUsers on a dead idle connection: %d users, %v", n, err)
	}
}

func TestSlapdContextCancelMidRead(t *testing.T) {
	s := ldaptest.StartSlapdWith(t, ldaptest.SlapdOptions{BulkUsers: 500})
	cfg := ldaptest.BulkDirectory(s)
	cfg.PageSize = 50
	l := openT(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	err := l.ReadUsers(ctx, func(User) error {
		n++
		if n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadUsers after cancel = %v (%d users), want context.Canceled", err, n)
	}
	// The pool recovers: a new call with a live context works.
	if _, err := l.FindUser(testCtx(t), "bulk00007"); err != nil {
		t.Fatalf("FindUser after a cancelled read: %v", err)
	}
}

func TestSlapdPoolConcurrent(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	cfg := f.Dir
	cfg.PoolSize = 2
	before := runtime.NumGoroutine()
	l, err := Open(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	dial := l.pool.dialFn
	l.pool.dialFn = func(ctx context.Context) (*conn, error) { dials.Add(1); return dial(ctx) }

	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "star"}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 20 {
		wg.Go(func() {
			for j := range 10 {
				name := names[(i+j)%len(names)]
				u, err := l.FindUser(testCtx(t), f.Users[name])
				if err != nil {
					errs <- err
					return
				}
				if u.Username != f.Users[name] {
					errs <- errors.New("FindUser(" + name + ") returned " + u.Username)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := dials.Load(); got != 2 {
		t.Fatalf("200 lookups on a pool of 2 dialed %d connections, want 2", got)
	}

	// Close while 10 goroutines hammer it: every call ends (success or
	// ErrClosed), nothing deadlocks, no connection goroutine is left.
	var busy sync.WaitGroup
	var ok, closed atomic.Int32
	for range 10 {
		busy.Go(func() {
			for {
				_, err := l.FindUser(testCtx(t), f.Users["alice"])
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrClosed):
					closed.Add(1)
					return
				default:
					t.Errorf("FindUser during close: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { l.Close(); busy.Wait(); l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close while busy deadlocked")
	}
	if ok.Load() == 0 || closed.Load() != 10 {
		t.Fatalf("%d lookups succeeded, %d goroutines saw ErrClosed; want >0 and 10", ok.Load(), closed.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after Close: leak\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// observedOps lists the op labels of ldap_operation_duration_seconds with at
// least one observation for any directory.
func observedOps(t *testing.T, m *metrics.Metrics) map[string]bool {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "ldapgate_ldap_operation_duration_seconds" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			if metric.GetHistogram().GetSampleCount() == 0 {
				continue
			}
			for _, lp := range metric.GetLabel() {
				if lp.GetName() == "op" {
					ops[lp.GetValue()] = true
				}
			}
		}
	}
	return ops
}

func TestSlapdReferrals(t *testing.T) {
	s := ldaptest.StartSlapd(t)
	f := s.NewFixture(t)
	usersBase := f.Dir.UsersDN + "," + f.Dir.BaseDN
	ref := ldap.NewAddRequest("ou=elsewhere,"+usersBase, nil)
	ref.Attribute("objectClass", []string{"referral", "extensibleObject"})
	ref.Attribute("ou", []string{"elsewhere"})
	ref.Attribute("ref", []string{"ldap://127.0.0.1:1/ou=elsewhere,dc=other,dc=example"})
	if err := s.AdminConn(t).Add(ref); err != nil {
		t.Fatalf("add referral: %v", err)
	}

	// A continuation reference inside the searched tree (what AD sends for
	// its other naming contexts) is not part of the answer: the read
	// succeeds with every user.
	n := 0
	if err := openT(t, f.Dir).ReadUsers(testCtx(t), func(User) error { n++; return nil }); err != nil || n != len(f.Users) {
		t.Fatalf("ReadUsers past a continuation reference: %d users, %v; want %d, nil", n, err, len(f.Users))
	}

	// A base that is itself elsewhere (result 10) is an incomplete read.
	cfg := f.Dir
	cfg.UsersDN = "ou=x,ou=elsewhere," + f.Dir.UsersDN
	err := openT(t, cfg).ReadUsers(testCtx(t), func(User) error { return nil })
	var re *ReadError
	if !errors.As(err, &re) || re.Kind != KindReferral || re.Code != ldap.LDAPResultReferral || !errors.Is(err, ErrIncompleteRead) {
		t.Fatalf("ReadUsers below a referral = %v, want ErrIncompleteRead of kind referral (10)", err)
	}
}
