package web

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/auth"
)

// FuzzStripCredentials: whatever Authorization and x-xsrf-token a client
// sends, once stripCredentials has run the request proxied upstream carries
// no credential ldapgate itself would read — no Bearer or x-xsrf session
// token, no Basic user and password — so the upstream can neither replay a
// session nor learn a directory password.
//
//	go test -run '^$' -fuzz FuzzStripCredentials -fuzztime 30s ./web
func FuzzStripCredentials(f *testing.F) {
	tok := strings.Repeat("Q", auth.TokenLen)
	f.Add("Bearer "+tok, tok)
	f.Add("bearer\t"+tok+" ", " "+tok)
	f.Add("Basic YWxpY2VAZXhhbXBsZS5jb206cHc=", "")
	f.Add("basic\tYWxpY2VAZXhhbXBsZS5jb206cHc=", "x")
	f.Add("Negotiate abc", "")
	f.Fuzz(func(t *testing.T, authz, xsrf string) {
		if strings.ContainsAny(authz+xsrf, "\r\n") {
			return
		}
		raw := "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: " + authz + "\r\nX-Xsrf-Token: " + xsrf + "\r\n\r\n"
		var h fasthttp.RequestHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		stripCredentials(&h)
		toks := auth.RequestTokens(&h, "")
		if toks[0] != nil || toks[1] != nil {
			t.Fatalf("a session token survived: %q", toks)
		}
		if u, p, ok := auth.ParseBasic(h.Peek("Authorization")); ok {
			t.Fatalf("Basic credentials %q:%q survived in %q", u, p, h.Peek("Authorization"))
		}
	})
}
