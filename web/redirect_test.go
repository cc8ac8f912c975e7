package web

import (
	"net/url"
	"strings"
	"testing"
)

func TestSafeRedirect(t *testing.T) {
	for _, tc := range []struct {
		rd string
		ok bool
	}{
		{"/", true},
		{"/app", true},
		{"/app/x?y=1&z=%2F#frag", true},
		{"/%2F%2Fevil", true}, // a path segment, not an authority
		{"", false},
		{"//evil", false},
		{"///evil", false},
		{"/\\evil", false},
		{"\\\\evil", false},
		{"\\/evil", false},
		{"https://evil", false},
		{"http:/evil", false},
		{"javascript:alert(1)", false},
		{"evil", false},
		{" /evil", false},
		{"/\t/evil", false},
		{"/\n/evil", false},
		{"/a\x00b", false},
		{"/a\x7fb", false},
		{"/é", false},
		{"/a b", false},
		{"/" + strings.Repeat("a", maxRedirect), false},
	} {
		got, ok := SafeRedirect(tc.rd)
		if ok != tc.ok || (ok && got != tc.rd) || (!ok && got != "/") {
			t.Errorf("SafeRedirect(%q) = %q, %v", tc.rd, got, ok)
		}
	}
}

// FuzzRedirect: an accepted rd always stays on this site, however a
// browser reads it: one leading '/', no backslash, no control or space
// characters, and no scheme or host once parsed.
//
//	go test -run '^$' -fuzz FuzzRedirect -fuzztime 30s ./web
func FuzzRedirect(f *testing.F) {
	for _, s := range []string{"/", "/app?x=1", "//evil", "/\\evil", "https://evil", "/\t/evil", "/%2f%2fevil", "/a/../../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rd string) {
		got, ok := SafeRedirect(rd)
		if !ok {
			if got != "/" {
				t.Fatalf("refused %q but returned %q", rd, got)
			}
			return
		}
		if got != rd || len(got) == 0 || got[0] != '/' || (len(got) > 1 && (got[1] == '/' || got[1] == '\\')) {
			t.Fatalf("accepted %q", rd)
		}
		if strings.ContainsAny(got, "\\ \t\r\n\x00") {
			t.Fatalf("accepted %q", rd)
		}
		// How a browser resolves it against our origin.
		base, _ := url.Parse("https://gate.example/login")
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatalf("accepted unparsable %q", rd)
		}
		if u := base.ResolveReference(ref); u.Host != "gate.example" || u.Scheme != "https" {
			t.Fatalf("%q leaves the site: %s", rd, u)
		}
	})
}

// TestSafeRedirectTo: absolute rd only to ldapgate's own host or a listed
// one; every spelling a browser could read as another host is refused.
func TestSafeRedirectTo(t *testing.T) {
	const own = "gate.example.com"
	hosts := []string{"app.example.com", "ports.example.com:8443"}
	for _, tc := range []struct {
		rd string
		ok bool
	}{
		{"/app?x=1", true},
		{"https://gate.example.com/page", true},
		{"http://GATE.example.com/page", true},
		{"https://app.example.com/page?x=1#f", true},
		{"https://app.example.com:8443/page", true}, // a listed host without port: any port
		{"https://ports.example.com:8443/x", true},
		{"https://ports.example.com/x", false}, // listed with a port: that port only
		{"https://ports.example.com:9/x", false},
		{"https://app.example.com", true},
		{"https://evil.example/", false},
		{"https://app.example.com.evil.example/", false},
		{"https://evilapp.example.com/", false},
		{"//evil.example/", false},
		{"///evil.example/", false},
		{"\\\\evil.example/", false},
		{"/\\evil.example/", false},
		{"https:evil.example", false},
		{"https:/evil.example", false},
		{"https:///evil.example", false},
		{"https://app.example.com@evil.example/", false},
		{"https://evil.example@app.example.com/", false}, // userinfo at all: refused
		{"https://app.example.com:443@evil.example/", false},
		{"https://app.example.com\\@evil.example/", false},
		{"https://evil.example#@app.example.com", false},
		{"https://evil.example?@app.example.com", false},
		{"https://app.example.com%40evil.example/", false},
		{"https://app.example.com%2f@evil.example/", false},
		{"javascript://app.example.com/%0aalert(1)", false},
		{"ftp://app.example.com/", false},
		{"https://app.example.com/\tx", false},
		{" https://app.example.com/", false},
		{"https://app.example.com/é", false},
		{"", false},
		{"https://" + strings.Repeat("a", maxRedirect), false},
	} {
		got, ok := SafeRedirectTo(tc.rd, own, hosts)
		if ok != tc.ok || (ok && got != tc.rd) || (!ok && got != "/") {
			t.Errorf("SafeRedirectTo(%q) = %q, %v; want ok=%v", tc.rd, got, ok, tc.ok)
		}
	}
	// No own host (not known) and no list: only relative paths.
	if _, ok := SafeRedirectTo("https://gate.example.com/", "", nil); ok {
		t.Error("an absolute rd accepted with no host to match")
	}
}

// FuzzRedirectTo: an accepted absolute rd names, as a browser (and Go's
// URL parser) reads it, the own host or a listed one.
func FuzzRedirectTo(f *testing.F) {
	for _, s := range []string{"https://app.example.com/x", "https://app.example.com@evil/", "https://evil#@app.example.com", "/x", "https:evil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rd string) {
		got, ok := SafeRedirectTo(rd, "gate.example.com", []string{"app.example.com"})
		if !ok || strings.HasPrefix(got, "/") {
			return
		}
		base, _ := url.Parse("https://gate.example.com/login")
		ref, err := url.Parse(got)
		if err != nil {
			t.Fatalf("accepted unparsable %q", rd)
		}
		u := base.ResolveReference(ref)
		if h := strings.ToLower(u.Hostname()); h != "gate.example.com" && h != "app.example.com" || u.User != nil {
			t.Fatalf("%q leads to %s", rd, u)
		}
	})
}
