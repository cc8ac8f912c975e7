package auth

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
)

// fuzzDirs: two directories share example.com, one has its own domain,
// one uses legacy email naming.
func fuzzDirs() []*directory.Entry {
	mk := func(id uint64, name, domain, naming string) *directory.Entry {
		return &directory.Entry{Config: config.Directory{ID: id, Name: name, Domain: domain, Naming: naming, BaseDN: "dc=x"}}
	}
	return []*directory.Entry{
		mk(1, "corp", "example.com", config.NamingUsernameAtDomain),
		mk(2, "corp2", "example.com", config.NamingUsernameAtDomain),
		mk(3, "lab", "lab.example.org", config.NamingUsernameAtDomain),
		mk(4, "legacy", "legacy.example.net", config.NamingEmail),
	}
}

// setOf is a directory set holding entries, as the login service reads it.
func setOf(entries []*directory.Entry) *directory.Set {
	s := directory.NewSet()
	s.Replace(entries)
	return s
}

func TestParseLoginName(t *testing.T) {
	all := fuzzDirs()
	one := all[2:3]
	for _, tc := range []struct {
		name, login, dir string
		dirs             []*directory.Entry
		wantErr          error
		canonical, user  string
		dirID            uint64
		ambiguous        bool
	}{
		{"one dir, full name", "Bob@Lab.Example.org", "", one, nil, "bob@lab.example.org", "bob", 3, false},
		{"one dir, bare name is local only", "bob", "", one, nil, "bob", "", 0, false},
		{"one dir, other domain is local only", "root@local", "", one, nil, "root@local", "", 0, false},
		{"no dirs", "root@local", "", nil, nil, "root@local", "", 0, false},
		{"two dirs same domain", "bob@example.com", "", all, nil, "bob@example.com", "", 0, true},
		{"two dirs, chosen by id", "bob@example.com", "2", all, nil, "bob@example.com", "bob", 2, false},
		{"two dirs, chosen by name", "bob", "CORP", all, nil, "bob@example.com", "bob", 1, false},
		{"chosen dir, other domain", "bob@lab.example.org", "corp", all, nil, "bob@lab.example.org", "", 0, false},
		{"unknown directory", "bob", "nope", all, ErrUnknownDirectory, "", "", 0, false},
		{"domain routes", "eve@lab.example.org", "", all, nil, "eve@lab.example.org", "eve", 3, false},
		{"at in user part", "a@b@lab.example.org", "", all, nil, "a@b@lab.example.org", "a@b", 3, false},
		{"legacy mail (no domain dir)", "x@mail.test", "", all, nil, "x@mail.test", "x@mail.test", 4, false},
		{"legacy chosen", "x@mail.test", "legacy", all, nil, "x@mail.test", "x@mail.test", 4, false},
		{"spaces trimmed", "  bob@lab.example.org ", "", all, nil, "bob@lab.example.org", "bob", 3, false},
		{"empty", "", "", all, ErrInvalidName, "", "", 0, false},
		{"blank", "   ", "", all, ErrInvalidName, "", "", 0, false},
		{"empty user", "@example.com", "", all, ErrInvalidName, "", "", 0, false},
		{"empty domain", "bob@", "", all, ErrInvalidName, "", "", 0, false},
		{"NUL", "bob\x00@example.com", "", all, ErrInvalidName, "", "", 0, false},
		{"newline", "bob\n@example.com", "", all, ErrInvalidName, "", "", 0, false},
		{"DEL", "bob\x7f", "", all, ErrInvalidName, "", "", 0, false},
		{"C1 control", "bob\u0085", "", all, ErrInvalidName, "", "", 0, false},
		{"bad UTF-8", "bob\xff", "", all, ErrInvalidName, "", "", 0, false},
		{"too long", strings.Repeat("a", MaxNameLen+1), "", all, ErrInvalidName, "", "", 0, false},
		{"control in directory", "bob", "corp\x00", all, ErrInvalidName, "", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := ParseLoginName(tc.login, tc.dir, setOf(tc.dirs))
			if tc.wantErr != nil {
				if err != tc.wantErr { //nolint:errorlint // exact sentinel expected
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var id uint64
			if ln.Dir != nil {
				id = ln.Dir.Config.ID
			}
			if ln.Canonical != tc.canonical || ln.Username != tc.user || id != tc.dirID || ln.Ambiguous != tc.ambiguous {
				t.Fatalf("got %+v (dir %d)", ln, id)
			}
		})
	}
	if !errorsIsBad(ErrInvalidName) {
		t.Fatal("ErrInvalidName must be a bad-credentials error (401)")
	}
}

// TestParseLoginNameRefIsByRef: the request's directory is the one
// directory.Set.ByRef names, with its precedence: an id first (also when
// a directory is named like another's id), then a name in any case;
// anything else is ErrUnknownDirectory.
func TestParseLoginNameRefIsByRef(t *testing.T) {
	mk := func(id uint64, name string) *directory.Entry {
		return &directory.Entry{Config: config.Directory{ID: id, Name: name, Domain: "example.com", BaseDN: "dc=x"}}
	}
	dirs := setOf([]*directory.Entry{mk(1, "2"), mk(2, "corp"), mk(7, "9"), mk(8, "Lab")})
	for ref, want := range map[string]uint64{
		"2":    2, // id 2, not the directory named "2"
		"02":   2,
		"9":    7, // no id 9: the directory named "9"
		"1":    1,
		"CORP": 2,
		"lab":  8,
		" 8 ":  8, // trimmed
		"3":    0,
		"+2":   0,
		"-1":   0,
		"x":    0,
	} {
		ln, err := ParseLoginName("bob", ref, dirs)
		byRef, ok := dirs.ByRef(strings.TrimSpace(ref))
		switch {
		case want == 0:
			if err != ErrUnknownDirectory || ok { //nolint:errorlint // exact sentinel expected
				t.Errorf("ref %q: err %v (ByRef found %v), want ErrUnknownDirectory", ref, err, ok)
			}
		case err != nil:
			t.Errorf("ref %q: %v", ref, err)
		case ln.Dir == nil || ln.Dir != byRef || ln.Dir.Config.ID != want:
			t.Errorf("ref %q: directory %+v, ByRef %+v, want id %d", ref, ln.Dir, byRef, want)
		}
	}
}

func errorsIsBad(err error) bool { return strings.Contains(err.Error(), ErrBadCredentials.Error()) }

// FuzzLoginName: whatever the input, the parser never panics, and what it
// accepts is bounded, free of control characters, normalised, and routed
// only to a directory whose domain (or legacy naming) fits.
//
//	go test -run '^$' -fuzz FuzzLoginName -fuzztime 30s ./auth
func FuzzLoginName(f *testing.F) {
	for _, s := range []string{"bob@example.com", "bob", "a@b@c", "@", "", "\x00", "*)(uid=*", "BOB@LAB.EXAMPLE.ORG "} {
		f.Add(s, "")
		f.Add(s, "corp")
	}
	dirs := setOf(fuzzDirs())
	f.Fuzz(func(t *testing.T, name, dir string) {
		ln, err := ParseLoginName(name, dir, dirs)
		if err != nil {
			if ln != (LoginName{}) {
				t.Fatalf("error with a result: %+v", ln)
			}
			return
		}
		if len(name) > MaxNameLen || !utf8.ValidString(name) || !validText(ln.Canonical) || ln.Canonical == "" {
			t.Fatalf("accepted %q → %+v", name, ln)
		}
		if ln.Canonical != strings.ToLower(ln.Canonical) || ln.Canonical != strings.TrimSpace(ln.Canonical) {
			t.Fatalf("not normalised: %q", ln.Canonical)
		}
		if ln.Dir == nil {
			if ln.Username != "" {
				t.Fatalf("a directory username without a directory: %+v", ln)
			}
			return
		}
		if ln.Ambiguous || ln.Username == "" {
			t.Fatalf("inconsistent: %+v", ln)
		}
		if ln.Dir.Config.Naming == config.NamingEmail {
			if !ln.ByMail || !strings.Contains(ln.Username, "@") {
				t.Fatalf("legacy routing: %+v", ln)
			}
			return
		}
		if want := ln.Username + "@" + ln.Dir.Config.DomainName(); ln.Canonical != want {
			t.Fatalf("canonical %q, want %q", ln.Canonical, want)
		}
	})
}

// FuzzToken feeds arbitrary Authorization, x-xsrf-token and Cookie values
// through fasthttp's header parser and RequestTokens: whatever comes out
// must be a well-formed token, and a well-formed one sent plainly must
// come out.
//
//	go test -run '^$' -fuzz FuzzToken -fuzztime 30s ./auth
func FuzzToken(f *testing.F) {
	tok := res43('Q')
	f.Add("Bearer "+tok, tok, "ldapgate_session="+tok)
	f.Add("bearer  "+tok+"x", " "+tok+" ", "a=1; ldapgate_session="+tok+"; b=2")
	f.Add("Basic YTpi", "", "ldapgate_session=\""+tok+"\"")
	f.Add("", "", "ldapgate_session=; ldapgate_session="+tok)
	f.Add("Bearer", "x", "=;;=")
	f.Fuzz(func(t *testing.T, authz, xsrf, cookie string) {
		for _, v := range []string{authz, xsrf, cookie} {
			if strings.ContainsAny(v, "\r\n") {
				return // not a header value; the parser would see other headers
			}
		}
		raw := "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nX-Xsrf-Token: " + xsrf + "\r\nCookie: " + cookie + "\r\n\r\n"
		var h fasthttp.RequestHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		got := RequestTokens(&h, config.DefaultCookieName)
		for i, g := range got {
			if g != nil && !ValidToken(g) {
				t.Fatalf("tokens[%d] = %q is not well-formed", i, g)
			}
		}
		if b := ParseBearer([]byte(authz)); b != nil && !bytes.Equal(b, got[0]) {
			t.Fatalf("bearer %q parsed as %q from the request", b, got[0])
		}
		if ValidToken([]byte(xsrf)) && !bytes.Equal(got[1], []byte(xsrf)) {
			t.Fatalf("x-xsrf-token %q lost (got %q)", xsrf, got[1])
		}
		_, _, _ = ParseBasic([]byte(authz))
	})
}

// FuzzParseBasic: arbitrary Authorization values never panic; a user
// without ':' and any password, encoded as RFC 7617 says, come back as
// they were; whatever is accepted has a non-empty user free of ':'.
//
//	go test -run '^$' -fuzz FuzzParseBasic -fuzztime 30s ./auth
func FuzzParseBasic(f *testing.F) {
	f.Add("Basic YTpi", "alice@example.com", "pa:ss")
	f.Add("basic\tYTpi", "", "")
	f.Add("Basic ===", "a", "")
	f.Add("Basic Og==", "bob", "\x00")
	f.Fuzz(func(t *testing.T, raw, user, password string) {
		if u, p, ok := ParseBasic([]byte(raw)); ok && (u == "" || strings.Contains(u, ":")) {
			t.Fatalf("%q accepted as user %q, password %q", raw, u, p)
		}
		if user == "" || strings.Contains(user, ":") || len(user) > MaxNameLen || len(password) > 1000 {
			return
		}
		v := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		u, p, ok := ParseBasic([]byte(v))
		if !ok || u != user || p != password {
			t.Fatalf("%q: got %q, %q, %v; want %q, %q", v, u, p, ok, user, password)
		}
	})
}
