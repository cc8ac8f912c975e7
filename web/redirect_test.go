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
