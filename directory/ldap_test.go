package directory

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// deadURL is a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ldap://" + addr
}

func openT(t *testing.T, cfg config.Directory) *LDAP {
	t.Helper()
	l, err := Open(cfg, nil, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestOpenDoesNotConnect(t *testing.T) {
	// A directory that is down must not fail Open.
	l := openT(t, config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{deadURL(t)}, BaseDN: "dc=example,dc=com"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := l.FindUser(ctx, "alice")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("FindUser on a dead directory = %v, want ErrUnavailable", err)
	}
	var re *ReadError
	if !errors.As(err, &re) || re.Kind != KindNetwork {
		t.Fatalf("FindUser on a dead directory = %#v, want kind %q", err, KindNetwork)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  config.Directory
		want string
	}{
		{"no urls", config.Directory{Name: "d", Type: config.TypeLDAP}, "no urls"},
		{"unknown type", config.Directory{Name: "d", Type: "bogus", URLs: []string{"ldap://x"}}, "unknown type"},
		{"empty type", config.Directory{Name: "d", URLs: []string{"ldap://x"}}, "unknown type"},
		{"http url", config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{"http://x"}}, "scheme"},
		{"no host", config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{"ldap://"}}, "no host"},
		{"bad user filter", config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{"ldap://x"}, UserFilter: "(uid=a"}, "user_filter"},
		{"missing ca file", config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{"ldaps://x"}, TLS: config.TLS{CAFile: "/nonexistent/ca.pem"}}, "ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Open(tc.cfg, nil, nil)
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded, want error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestAuthenticateEmptyPasswordBeforeIO(t *testing.T) {
	// The directory is a listener that never answers: a call that did any
	// I/O left a connection in its accept queue, counted at the end. (Not
	// a wall-clock threshold: a loaded machine is slow without doing I/O.)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := openT(t, config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{"ldap://" + ln.Addr().String()}, BaseDN: "dc=example,dc=com",
		ConnectTimeout: config.Duration(time.Second), Timeout: config.Duration(time.Second)})
	_, err = l.Authenticate(context.Background(), "alice", "")
	if !errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("empty password = %v, want ErrBadCredentials only", err)
	}
	// Names no directory holds are refused without a search either.
	for _, login := range []string{"", "alice\x00", "ali\nce"} {
		_, err := l.Authenticate(context.Background(), login, "pw")
		if !errors.Is(err, ErrBadCredentials) || !errors.Is(err, ErrUserNotFound) {
			t.Fatalf("Authenticate(%q) = %v, want ErrUserNotFound", login, err)
		}
	}
	// Nothing connected: Accept finds no pending connection. (A deadline
	// already past would not even look.)
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("a connection reached the directory: the refusals did I/O")
	}
}

func TestUserFilterEscapesOnce(t *testing.T) {
	l := openT(t, config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{"ldap://x"}, UserObjectFilter: "(objectClass=person)", UsernameAttribute: "uid"})
	for _, tc := range []struct{ login, want string }{
		{"alice", `(&(objectClass=person)(uid=alice))`},
		{"*", `(&(objectClass=person)(uid=\2a))`},
		{"st*r", `(&(objectClass=person)(uid=st\2ar))`},
		{"(", `(&(objectClass=person)(uid=\28))`},
		{")", `(&(objectClass=person)(uid=\29))`},
		{`\`, `(&(objectClass=person)(uid=\5c))`},
		{`\2a`, `(&(objectClass=person)(uid=\5c2a))`},
		{"a\x00b", `(&(objectClass=person)(uid=a\00b))`},
		{"alice)(uid=*", `(&(objectClass=person)(uid=alice\29\28uid=\2a))`},
		{"jürgen", `(&(objectClass=person)(uid=j\c3\bcrgen))`},
	} {
		t.Run(tc.login, func(t *testing.T) {
			got := l.userFilterFor(tc.login)
			if got != tc.want {
				t.Fatalf("filter for %q = %s, want %s", tc.login, got, tc.want)
			}
			// The result must be one valid filter with exactly one
			// equality assertion on uid whose value is the login itself.
			f, err := ldap.CompileFilter(got)
			if err != nil {
				t.Fatalf("filter %s does not compile: %v", got, err)
			}
			back, err := ldap.DecompileFilter(f)
			if err != nil || back != got {
				t.Fatalf("round trip %s -> %s, %v", got, back, err)
			}
		})
	}
}

func TestSettingsDefaults(t *testing.T) {
	for _, tc := range []struct {
		typ, username, uuid string
		attrs               []string
		notAttrs            []string
	}{
		{config.TypeLDAP, "uid", "entryUUID", []string{"memberOf", "pwdAccountLockedTime"}, []string{"userAccountControl", "nsAccountLock"}},
		{config.TypeActiveDirectory, "sAMAccountName", "objectGUID", []string{"userAccountControl", "primaryGroupID", "memberOf"}, []string{"pwdAccountLockedTime"}},
		{config.TypeFreeIPA, "uid", "ipaUniqueID", []string{"nsAccountLock", "nsUniqueId"}, []string{"userAccountControl"}},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			s, err := resolveSettings(config.Directory{Name: "d", Type: tc.typ, URLs: []string{"ldap://x"}})
			if err != nil {
				t.Fatal(err)
			}
			if s.usernameAttr != tc.username || s.uuidAttr != tc.uuid {
				t.Fatalf("username %q uuid %q, want %q %q", s.usernameAttr, s.uuidAttr, tc.username, tc.uuid)
			}
			attrs := s.userAttributes()
			for _, a := range tc.attrs {
				if !slices.Contains(attrs, a) {
					t.Errorf("attributes %v lack %s", attrs, a)
				}
			}
			for _, a := range tc.notAttrs {
				if slices.Contains(attrs, a) {
					t.Errorf("attributes %v have %s", attrs, a)
				}
			}
		})
	}
	// disabled_filter replaces the type's disabled attribute.
	s, err := resolveSettings(config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{"ldap://x"}, DisabledFilter: "(employeeType=gone)", UserFilter: "(ou=x)"})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(s.userAttributes(), "pwdAccountLockedTime") {
		t.Error("disabled_filter set but pwdAccountLockedTime still requested")
	}
	if got, want := s.userSearchFilter(s.disabledFilter), "(&(objectClass=person)(ou=x)(employeeType=gone))"; got != want {
		t.Errorf("disabled search filter %s, want %s", got, want)
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		name string
		want valueRange
		ok   bool
	}{
		{"member;range=0-1499", valueRange{0, 1499, false}, true},
		{"Member;Range=1500-*", valueRange{1500, -1, true}, true},
		{"member;range=1500-2999", valueRange{1500, 2999, false}, true},
		{"member", valueRange{}, false},
		{"memberOf;range=0-1", valueRange{}, false},
		{"member;range=5-1", valueRange{}, false},
		{"member;range=x-1", valueRange{}, false},
		{"member;range=0", valueRange{}, false},
	} {
		got, ok := parseRange(tc.name, "member")
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRange(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestStripOptionalUID(t *testing.T) {
	for in, want := range map[string]string{
		"uid=a,dc=x":         "uid=a,dc=x",
		"uid=a,dc=x#'0101'B": "uid=a,dc=x",
		`dc=x,cn=a\#'01'B`:   `dc=x,cn=a\#'01'B`,
		"uid=a,dc=x#'0101'":  "uid=a,dc=x#'0101'",
	} {
		if got := stripOptionalUID(in); got != want {
			t.Errorf("stripOptionalUID(%q) = %q, want %q", in, got, want)
		}
	}
}

// silentServer accepts connections and never answers: a hung directory.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "ldap://" + ln.Addr().String()
}

func TestHungServerTimeouts(t *testing.T) {
	url := silentServer(t)
	l := openT(t, config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{url}, BaseDN: "dc=example,dc=com",
		BindDN: "cn=svc,dc=example,dc=com", BindPassword: "x", Timeout: config.Duration(300 * time.Millisecond)})

	// The per-operation timeout ends a bind nobody answers.
	start := time.Now()
	_, err := l.FindUser(context.Background(), "alice")
	var re *ReadError
	if !errors.As(err, &re) || re.Kind != KindTimeout || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("FindUser on a hung server = %v, want ErrUnavailable of kind timeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("timed out after %v, want about the 300ms operation timeout", d)
	}

	// A context ending first wins, and says so.
	l2 := openT(t, config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{url}, BaseDN: "dc=example,dc=com",
		BindDN: "cn=svc,dc=example,dc=com", BindPassword: "x", Timeout: config.Duration(time.Minute)})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = l2.ReadUsers(ctx, func(User) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadUsers with a 100ms context = %v, want DeadlineExceeded and ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned after %v: the context was not honoured", d)
	}
	// Login binds too.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := l2.bindAs(ctx2, User{DN: "uid=a,dc=example,dc=com"}, "pw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("bind with a 100ms context = %v, want DeadlineExceeded", err)
	}
}
