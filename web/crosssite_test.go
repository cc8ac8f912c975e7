package web

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// send is stack.do with every header as given: "Host: x" sets the Host
// header, and nothing is added (no form content type for /login).
func (s *stack) send(t testing.TB, method, path, body string, headers ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		if v = strings.TrimSpace(v); k == "Host" {
			req.Host = v
		} else {
			req.Header[k] = append(req.Header[k], v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// verdict is what the cross-site rule did with a request.
type verdict string

const (
	passed      verdict = "passed to the handler"
	refused     verdict = "refused 403 cross_site_request"
	unsupported verdict = "refused 415 unsupported_media_type"
)

func verdictOf(r reply) verdict {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	switch {
	case r.status == 403 && e.Error.Code == "cross_site_request":
		return refused
	case r.status == 415 && e.Error.Code == "unsupported_media_type":
		return unsupported
	}
	return passed
}

// drain empties the admin stub's record of callers; it returns the last.
func (s *stack) drain() string {
	last := ""
	for {
		select {
		case c := <-s.adminCaller:
			last = c
		default:
			return last
		}
	}
}

// origin classes, as SPEC §5 sees a request.
type originClass int

const (
	notBrowser     originClass = iota // neither Origin nor Sec-Fetch-Site: curl, scripts
	browserOwn                        // a browser, from ldapgate's own origin
	browserForeign                    // a browser, from any other origin
)

// TestCrossSiteRule is finding 4 at the HTTP front: every guarded endpoint
// × credential kind × Origin / Sec-Fetch-Site / neither × content type,
// through a real server. The expectations are the SPEC's table.
func TestCrossSiteRule(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	host := strings.TrimPrefix(s.url, "http://")

	endpoints := []struct {
		method, path string
		json         bool // a JSON endpoint: 415 for other bodies
	}{
		{"POST", "/login", false},
		{"POST", "/logout", false},
		{"POST", "/auth/v4/public/token", true},
		{"POST", "/auth/v4/public/password", true},
		{"POST", "/auth/v4/logout", true},
		{"POST", "/auth/v4/user", true},
		{"PATCH", "/auth/v4/ldap/1", true},
		{"DELETE", "/auth/v4/user/7", true},
		{"POST", "/auth/v4/ldap/1/sync", true},
		{"POST", "/auth/v4/internal/settings/log/level", true},
	}
	type credKind int
	const (
		none credKind = iota
		ambient
		explicit
	)
	creds := []struct {
		name    string
		kind    credKind
		headers []string
	}{
		{"no credentials", none, nil},
		{"session cookie", ambient, []string{s.cookie(tok)}},
		{"basic", ambient, []string{basic(s.fx.Login("alice"), ldaptest.Password)}},
		{"bearer session", explicit, []string{"Authorization: Bearer " + tok}},
		{"bearer admin token", explicit, []string{"Authorization: bearer some-admin-token"}},
		{"bearer session after a tab", explicit, []string{"Authorization: Bearer\t" + tok, s.cookie(tok)}},
		{"x-xsrf-token session", explicit, []string{"X-Xsrf-Token: " + tok}},
		{"bearer admin token and cookie", explicit, []string{"Authorization: Bearer some-admin-token", s.cookie(tok)}},
	}
	origins := []struct {
		name    string
		class   originClass
		headers []string
	}{
		{"neither", notBrowser, nil},
		{"Origin own", browserOwn, []string{"Origin: " + s.url}},
		{"Origin own, scheme in capitals", browserOwn, []string{"Origin: HTTP://" + host}},
		{"Sec-Fetch-Site same-origin", browserOwn, []string{"Sec-Fetch-Site: same-origin"}},
		{"Origin and Sec-Fetch-Site own", browserOwn, []string{"Origin: " + s.url, "Sec-Fetch-Site: same-origin"}},
		// A proxy rewrote Host: the browser's own verdict stands.
		{"Origin other host, Sec-Fetch-Site same-origin", browserOwn, []string{"Origin: https://public.example", "Sec-Fetch-Site: same-origin"}},
		{"Origin other port", browserForeign, []string{"Origin: http://127.0.0.1:1"}},
		{"Origin other host", browserForeign, []string{"Origin: http://evil.example"}},
		{"Origin https on a plain connection", browserForeign, []string{"Origin: https://" + host}},
		{"Origin with a path", browserForeign, []string{"Origin: " + s.url + "/x"}},
		{"Origin null", browserForeign, []string{"Origin: null"}},
		// A page with Referrer-Policy: no-referrer posts Origin: null.
		{"Origin null, Sec-Fetch-Site same-origin", browserOwn, []string{"Origin: null", "Sec-Fetch-Site: same-origin"}},
		{"Origin null, Sec-Fetch-Site same-site", browserForeign, []string{"Origin: null", "Sec-Fetch-Site: same-site"}},
		{"Sec-Fetch-Site same-site", browserForeign, []string{"Sec-Fetch-Site: same-site"}},
		{"Sec-Fetch-Site cross-site", browserForeign, []string{"Sec-Fetch-Site: cross-site"}},
		{"Sec-Fetch-Site none", browserForeign, []string{"Sec-Fetch-Site: none"}},
		{"Origin own but Sec-Fetch-Site same-site", browserForeign, []string{"Origin: " + s.url, "Sec-Fetch-Site: same-site"}},
		// X-Forwarded-Host from a peer not in trusted_proxies counts for nothing.
		{"Origin matching an untrusted X-Forwarded-Host", browserForeign, []string{"Origin: http://evil.example", "X-Forwarded-Host: evil.example"}},
	}
	bodies := []struct {
		name, body string
		headers    []string
		json       bool
	}{
		{"application/json", `{"x":1}`, []string{"Content-Type: application/json"}, true},
		{"application/json with charset", `{"x":1}`, []string{"Content-Type: Application/JSON; charset=utf-8"}, true},
		{"text/plain", `{"x":1}`, []string{"Content-Type: text/plain"}, false},
		{"form", "x=1", []string{"Content-Type: application/x-www-form-urlencoded"}, false},
		{"no content type", `{"x":1}`, nil, false},
		{"no body", "", []string{"Content-Type: text/plain"}, true},
	}
	for _, ep := range endpoints {
		for _, c := range creds {
			for _, o := range origins {
				for _, b := range bodies {
					// SPEC §5: explicit credentials pass from anywhere;
					// ambient ones, and a browser's credential-less
					// writes (logins), only from the own origin, and
					// only with JSON bodies to JSON endpoints.
					want := passed
					checked := c.kind == ambient || c.kind == none && o.class != notBrowser
					switch {
					case c.kind == explicit:
					case checked && o.class == browserForeign:
						want = refused
					case checked && ep.json && !b.json:
						want = unsupported
					}
					hs := append(append(append([]string{}, c.headers...), o.headers...), b.headers...)
					r := s.send(t, ep.method, ep.path, b.body, hs...)
					s.drain()
					if got := verdictOf(r); got != want {
						t.Errorf("%s %s, %s, %s, %s: %s (%d %s), want %s",
							ep.method, ep.path, c.name, o.name, b.name, got, r.status, r.body, want)
					}
				}
			}
		}
	}

	// Safe methods are never refused, whatever their origin.
	for _, m := range []string{"GET", "HEAD", "OPTIONS"} {
		r := s.send(t, m, "/auth/v4/user", "", s.cookie(tok), "Origin: http://evil.example")
		s.drain()
		if got := verdictOf(r); got != passed {
			t.Errorf("%s with a foreign origin: %s", m, got)
		}
	}
	// Proxied paths are the platform's business: a foreign write passes.
	tok2 := s.login(t, "bob")
	if r := s.send(t, "POST", "/app/x", "a=1", s.cookie(tok2), "Origin: http://evil.example",
		"Content-Type: application/x-www-form-urlencoded"); r.status != 200 {
		t.Errorf("proxied foreign POST: %d %s", r.status, r.body)
	}
}

// TestCrossSiteBodyFraming: the 415 rule looks at the body whatever its
// framing: chunked counts, a request without Content-Length has none.
func TestCrossSiteBodyFraming(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	host := strings.TrimPrefix(s.url, "http://")
	for _, tc := range []struct {
		name, framing string
		want          verdict
	}{
		{"no Content-Length", "\r\n", passed},
		{"chunked", "Transfer-Encoding: chunked\r\n\r\n7\r\n{\"x\":1}\r\n0\r\n\r\n", unsupported},
		{"Content-Length", "Content-Length: 7\r\n\r\n{\"x\":1}", unsupported},
	} {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.WriteString(c, "POST /auth/v4/ldap/1/sync HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n"+
			s.cookie(tok)+"\r\nContent-Type: text/plain\r\n"+tc.framing)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		s.drain()
		if got := verdictOf(reply{resp.StatusCode, resp.Header, b}); got != tc.want {
			t.Errorf("%s: %s (%d %s), want %s", tc.name, got, resp.StatusCode, b, tc.want)
		}
	}
}

// TestCrossSiteExplicitCredentialAlone: beside an explicit credential a
// foreign request's cookie is dropped, so only the credential the client
// chose to send can authenticate it.
func TestCrossSiteExplicitCredentialAlone(t *testing.T) {
	s := newStack(t, stackOpts{})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	alice := strings.ToLower(s.fx.Login("alice"))
	for _, tc := range []struct {
		origin, want string
	}{
		{s.url, alice},
		{"http://evil.example", "-"},
	} {
		r := s.send(t, "POST", "/auth/v4/user", `{}`, "Authorization: Bearer not-a-session",
			s.cookie(tok), "Origin: "+tc.origin, "Content-Type: text/plain")
		if r.status != 200 {
			t.Fatalf("origin %s: %d %s", tc.origin, r.status, r.body)
		}
		if got := s.drain(); got != tc.want {
			t.Errorf("origin %s: the admin API saw caller %q, want %q", tc.origin, got, tc.want)
		}
	}
}

// TestCrossSiteBehindTrustedProxy: behind a proxy in trusted_proxies,
// ldapgate's own origin is X-Forwarded-Proto :// X-Forwarded-Host.
func TestCrossSiteBehindTrustedProxy(t *testing.T) {
	s := newStack(t, stackOpts{tweak: func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8"} }})
	if s == nil {
		return
	}
	tok := s.login(t, "alice")
	for _, tc := range []struct {
		name    string
		headers []string
		want    verdict
	}{
		{"forwarded https host", []string{"Origin: https://public.example", "X-Forwarded-Host: public.example", "X-Forwarded-Proto: https"}, passed},
		{"default port spelled out", []string{"Origin: https://public.example:443", "X-Forwarded-Host: Public.Example", "X-Forwarded-Proto: https"}, passed},
		{"other port", []string{"Origin: https://public.example:8443", "X-Forwarded-Host: public.example:8443", "X-Forwarded-Proto: https"}, passed},
		{"first of a forwarded list", []string{"Origin: https://public.example", "X-Forwarded-Host: public.example, evil.example", "X-Forwarded-Proto: https, http"}, passed},
		{"Host when no X-Forwarded-Host", []string{"Origin: https://public.example", "Host: public.example", "X-Forwarded-Proto: https"}, passed},
		{"no X-Forwarded-Proto: the connection's http", []string{"Origin: https://public.example", "X-Forwarded-Host: public.example"}, refused},
		{"second of a forwarded list", []string{"Origin: https://evil.example", "X-Forwarded-Host: public.example, evil.example", "X-Forwarded-Proto: https"}, refused},
		{"other host", []string{"Origin: https://evil.example", "X-Forwarded-Host: public.example", "X-Forwarded-Proto: https"}, refused},
		{"other scheme", []string{"Origin: http://public.example", "X-Forwarded-Host: public.example", "X-Forwarded-Proto: https"}, refused},
	} {
		hs := append([]string{s.cookie(tok), "Content-Type: application/json"}, tc.headers...)
		r := s.send(t, "POST", "/auth/v4/user", `{}`, hs...)
		s.drain()
		if got := verdictOf(r); got != tc.want {
			t.Errorf("%s: %s (%d %s), want %s", tc.name, got, r.status, r.body, tc.want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"http://a.example", "http://a.example:80", true},
		{"https://a.example", "https://A.EXAMPLE:443", true},
		{"http://[::1]:8080", "http://[::1]:8080", true},
		{"http://a.example", "https://a.example", false},
		{"http://a.example:8080", "http://a.example", false},
		{"http://a.example", "http://a.example.evil", false},
		{"http://a.example/", "http://a.example", false},
		{"http://user@a.example", "http://a.example", false},
		{"http://a.example?", "http://a.example", false},
		{"ftp://a.example", "ftp://a.example", false},
		{"null", "null", false},
		{"", "", false},
		{"http://", "http://", false},
	} {
		if got := sameOrigin(tc.a, tc.b); got != tc.want {
			t.Errorf("sameOrigin(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// FuzzSameOrigin: Origin comes from the client; the comparison must not
// panic, must be symmetric, and must hold only for parsable origins.
func FuzzSameOrigin(f *testing.F) {
	for _, s := range []string{"http://a.example", "https://A.example:443", "null", "http://[::1]:80", "http://a%2fb", "HTTP://x:0"} {
		f.Add(s, "http://a.example:80")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		got := sameOrigin(a, b)
		if got != sameOrigin(b, a) {
			t.Fatalf("not symmetric: %q %q", a, b)
		}
		_, _, _, ok := splitOrigin(a)
		if got && !ok {
			t.Fatalf("%q matched without parsing", a)
		}
		if ok && !sameOrigin(a, a) {
			t.Fatalf("%q does not match itself", a)
		}
	})
}
