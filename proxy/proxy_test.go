package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/metrics"
)

const testCookie = "ldapgate_session"

// echoed is what the echo upstream saw.
type echoed struct {
	Method  string      `json:"method"`
	URI     string      `json:"uri"`
	Host    string      `json:"host"`
	Header  http.Header `json:"header"`
	BodyLen int64       `json:"body_len"`
	BodySHA string      `json:"body_sha"`
}

// echoHandler answers with the request it received as JSON; the body is
// hashed as it streams in, never held.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(echoed{
		Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header,
		BodyLen: n, BodySHA: hex.EncodeToString(h.Sum(nil)),
	})
}

func startUpstream(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// gate is a fasthttp server on 127.0.0.1 running Forward, as ldapgate's
// front does: streaming request bodies, the session cookie read first.
type gate struct {
	p    *Proxy
	m    *metrics.Metrics
	addr string
	url  string
}

func startGate(t testing.TB, o Options, user *account.User) *gate {
	t.Helper()
	return startGateHook(t, o, user, nil)
}

// startGateHook is startGate with after called once Forward has returned,
// before the server writes the answer.
func startGateHook(t testing.TB, o Options, user *account.User, after func(*fasthttp.RequestCtx)) *gate {
	t.Helper()
	if o.CookieName == "" {
		o.CookieName = testCookie
	}
	m := metrics.New()
	p, err := New(o, slog.New(slog.DiscardHandler), m)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			// The session check reads the cookie before forwarding,
			// which makes fasthttp parse the Cookie header.
			_ = ctx.Request.Header.Cookie(o.CookieName)
			p.Forward(ctx, user)
			if after != nil {
				after(ctx)
			}
		},
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		Logger:                       quietLogger{},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
	})
	return &gate{p: p, m: m, addr: ln.Addr().String(), url: "http://" + ln.Addr().String()}
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

var alice = &account.User{
	ID: 7, Username: "alice@example.org", Email: "alice@example.org",
	Role: "admin", Groups: []string{"admins", "staff"},
}

// rawDo sends raw bytes on a fresh connection and reads one response, so a
// test controls header spelling exactly.
func rawDo(t testing.TB, addr, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	// Go's reader needs the method to know a HEAD answer has no body.
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, body
}

func rawEcho(t testing.TB, g *gate, raw string) echoed {
	t.Helper()
	resp, body := rawDo(t, g.addr, raw)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var e echoed
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode echo %q: %v", body, err)
	}
	return e
}

func fold(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "_", "-")
}

func TestIdentityHeadersSpoofing(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	spoofs := []string{
		"X-Forwarded-User: mallory",
		"x-forwarded-user: mallory",
		"X_Forwarded_User: mallory",
		"X-FORWARDED_USER: mallory",
		"x_forwarded-USER: mallory",
		"X-Forwarded-Email: mallory@evil",
		"x_forwarded_email: mallory@evil",
		"X-Forwarded-Role: admin",
		"X_FORWARDED_ROLE: admin",
		"X-Forwarded-Groups: admins",
		"x-forwarded_groups: admins",
		"X-Remote-User: mallory",
		"X_Remote_User: mallory",
	}
	// Connection may list a header to make a careless proxy delete it
	// after setting it; ours are set after the hop-by-hop pass.
	spoofReq := "GET /x HTTP/1.1\r\nHost: app.example\r\nConnection: X-Forwarded-User, X-Forwarded-Role\r\n" +
		strings.Join(spoofs, "\r\n") + "\r\n\r\n"

	tests := []struct {
		name    string
		headers config.Headers
		user    *account.User
		want    map[string]string // canonical name -> value; nil: none at all
	}{
		{
			name: "proxied", user: alice,
			want: map[string]string{
				"X-Forwarded-User": "alice@example.org", "X-Forwarded-Email": "alice@example.org",
				"X-Forwarded-Role": "admin", "X-Forwarded-Groups": "admins,staff",
			},
		},
		{name: "public path", user: nil},
		{
			name:    "custom names",
			headers: config.Headers{User: "x-remote-user"},
			user:    &account.User{Username: "bob@example.org", Role: "user"},
			want:    map[string]string{"X-Remote-User": "bob@example.org", "X-Forwarded-Role": "user"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGate(t, Options{Upstream: up.URL, Headers: tt.headers}, tt.user)
			e := rawEcho(t, g, spoofReq)
			identity := map[string]bool{
				"x-forwarded-user": true, "x-forwarded-email": true, "x-forwarded-role": true,
				"x-forwarded-groups": true, "x-remote-user": tt.headers.User != "",
			}
			got := map[string]string{}
			for k, vs := range e.Header {
				if !identity[fold(k)] {
					continue
				}
				if len(vs) != 1 {
					t.Errorf("header %s sent %d times: %q", k, len(vs), vs)
				}
				if _, dup := got[fold(k)]; dup {
					t.Errorf("two spellings of %s reached the upstream", k)
				}
				got[fold(k)] = vs[0]
				want, ok := tt.want[k]
				if !ok {
					t.Errorf("upstream saw %s: %q, want no such header", k, vs)
				} else if vs[0] != want {
					t.Errorf("upstream saw %s: %q, want %q", k, vs[0], want)
				}
			}
			for k := range tt.want {
				if _, ok := e.Header[k]; !ok {
					t.Errorf("upstream did not get %s", k)
				}
			}
		})
	}
}

// TestPrepareStripsIdentityAndSetIdentity: the header pass every forwarded
// request goes through (here for a public path: no user) drops the client's
// identity headers in any spelling and keeps unrelated ones; SetIdentity
// writes the forward-auth answer's headers.
func TestPrepareStripsIdentityAndSetIdentity(t *testing.T) {
	p, err := New(Options{Upstream: "http://127.0.0.1:1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(
		"GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_User: m\r\nx-forwarded-EMAIL: m\r\nX-Forwarded-Role: admin\r\nX-Forwarded-groups: g\r\nX-Other: keep\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	s := p.getScratch()
	p.prepare(&ctx, nil, s, false)
	p.scratch.Put(s)
	for k := range ctx.Request.Header.All() {
		switch fold(string(k)) {
		case "x-forwarded-user", "x-forwarded-email", "x-forwarded-role", "x-forwarded-groups":
			t.Errorf("prepare left %s", k)
		}
	}
	if string(ctx.Request.Header.Peek("X-Other")) != "keep" {
		t.Errorf("prepare removed an unrelated header")
	}

	var resp fasthttp.Response
	p.SetIdentity(&resp.Header, alice)
	for name, want := range map[string]string{
		"X-Forwarded-User": "alice@example.org", "X-Forwarded-Email": "alice@example.org",
		"X-Forwarded-Role": "admin", "X-Forwarded-Groups": "admins,staff",
	} {
		if got := string(resp.Header.Peek(name)); got != want {
			t.Errorf("SetIdentity %s = %q, want %q", name, got, want)
		}
	}
	var empty fasthttp.Response
	p.SetIdentity(&empty.Header, nil)
	if v := empty.Header.Peek("X-Forwarded-User"); v != nil {
		t.Errorf("SetIdentity(nil) set X-Forwarded-User %q", v)
	}
}

func TestSessionCookieNotForwarded(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	g := startGate(t, Options{Upstream: up.URL}, alice)
	tests := []struct {
		name    string
		cookies string // header lines
		want    []string
	}{
		{"middle", "Cookie: a=1; ldapgate_session=secret; b=2\r\n", []string{"a=1; b=2"}},
		{"first", "Cookie: ldapgate_session=secret; a=1\r\n", []string{"a=1"}},
		{"only", "Cookie: ldapgate_session=secret\r\n", nil},
		{"others byte for byte", "Cookie: q=\"quoted value\"; ldapgate_session=s; e=a=b=c; j=%7B%22x%22%7D\r\n",
			[]string{`q="quoted value"; e=a=b=c; j=%7B%22x%22%7D`}},
		{"no session cookie", "Cookie: a=1;b=2\r\n", []string{"a=1; b=2"}},
		{"two headers", "Cookie: a=1\r\nCookie: ldapgate_session=s; b=2\r\n", []string{"a=1; b=2"}},
		{"twice", "Cookie: ldapgate_session=one; a=1; ldapgate_session=two\r\n", []string{"a=1"}},
		{"prefix name kept", "Cookie: ldapgate_session2=x; xldapgate_session=y\r\n",
			[]string{"ldapgate_session2=x; xldapgate_session=y"}},
		{"none", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := rawEcho(t, g, "GET / HTTP/1.1\r\nHost: h\r\n"+tt.cookies+"\r\n")
			got := e.Header["Cookie"]
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("upstream Cookie = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	req := "GET / HTTP/1.1\r\nHost: app.example\r\n" +
		"X-Forwarded-For: 203.0.113.9, 10.0.0.1\r\nX_Forwarded_For: 198.51.100.1\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\nForwarded: for=198.51.100.2\r\n\r\n"
	tests := []struct {
		name      string
		trusted   []netip.Prefix
		xff, xfp  string
		xfh       string
		forwarded bool
	}{
		{name: "untrusted peer", xff: "127.0.0.1", xfp: "http", xfh: "app.example"},
		{name: "trusted peer", trusted: loopback, xff: "203.0.113.9, 10.0.0.1, 127.0.0.1", xfp: "https", xfh: "public.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGate(t, Options{Upstream: up.URL, TrustedProxies: tt.trusted}, alice)
			e := rawEcho(t, g, req)
			check := func(name, want string) {
				t.Helper()
				if got := e.Header.Values(name); len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q, want [%q]", name, got, want)
				}
			}
			check("X-Forwarded-For", tt.xff)
			check("X-Forwarded-Proto", tt.xfp)
			check("X-Forwarded-Host", tt.xfh)
			if v, ok := e.Header["X_forwarded_for"]; ok {
				t.Errorf("underscore X-Forwarded-For passed: %q", v)
			}
			if v, ok := e.Header["Forwarded"]; ok {
				t.Errorf("client Forwarded passed: %q", v)
			}
			if e.Host != "app.example" {
				t.Errorf("Host = %q, want the client's app.example", e.Host)
			}
		})
	}
}

// TestRealIPReplaced: X-Real-IP upstream is the client address as ldapgate
// determined it (the peer, or through trusted proxies the right-most
// untrusted X-Forwarded-For entry); client copies in every case and
// spelling are gone (SPEC §6).
func TestRealIPReplaced(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	req := "GET / HTTP/1.1\r\nHost: app.example\r\n" +
		"X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.0.0.1\r\n" +
		"X-Real-IP: 6.6.6.6\r\nx-real-ip: 6.6.6.7\r\nX_Real_IP: 6.6.6.8\r\nx_REAL-ip: 6.6.6.9\r\n\r\n"
	for _, tt := range []struct {
		name    string
		trusted []netip.Prefix
		want    string
	}{
		{"untrusted peer", nil, "127.0.0.1"},
		{"through trusted proxies", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}, "203.0.113.9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := startGate(t, Options{Upstream: up.URL, TrustedProxies: tt.trusted}, alice)
			e := rawEcho(t, g, req)
			var got []string
			for k, v := range e.Header {
				if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "x-real-ip") {
					got = append(got, k+": "+strings.Join(v, ","))
				}
			}
			if len(got) != 1 || got[0] != "X-Real-Ip: "+tt.want {
				t.Errorf("upstream X-Real-IP headers %q, want only %q", got, tt.want)
			}
		})
	}
}

func TestRewriteHost(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	g := startGate(t, Options{Upstream: up.URL, RewriteHost: true}, alice)
	e := rawEcho(t, g, "GET / HTTP/1.1\r\nHost: app.example\r\n\r\n")
	if want := strings.TrimPrefix(up.URL, "http://"); e.Host != want {
		t.Errorf("Host = %q, want %q", e.Host, want)
	}
	if got := e.Header.Get("X-Forwarded-Host"); got != "app.example" {
		t.Errorf("X-Forwarded-Host = %q", got)
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer ignores XFF", "192.0.2.1:1000", []string{"203.0.113.9"}, "192.0.2.1"},
		{"trusted peer, one hop", "10.1.1.1:1000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"right-most untrusted", "10.1.1.1:1000", []string{"1.1.1.1, 203.0.113.9, 10.2.2.2"}, "203.0.113.9"},
		{"several headers", "10.1.1.1:1000", []string{"1.1.1.1", "203.0.113.9, 10.2.2.2"}, "203.0.113.9"},
		{"all trusted", "10.1.1.1:1000", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"no XFF", "10.1.1.1:1000", nil, "10.1.1.1"},
		{"garbage stops walk", "10.1.1.1:1000", []string{"1.1.1.1, junk, 10.2.2.2"}, "10.2.2.2"},
		{"with port and ipv6", "[::1]:1000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"mapped v4 peer", "[::ffff:192.0.2.1]:1000", nil, "192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			var req fasthttp.Request
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			addr := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.peer))
			ctx.Init(&req, addr, nil)
			if got := ClientIP(&ctx, trusted); got.String() != tt.want {
				t.Errorf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestHopByHopHeaders(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Connection", "keep-alive")
		w.Header().Set("Upgrade", "h2c")
		w.Header().Set("X-End-To-End", "yes")
		echoHandler(w, r)
	}))
	g := startGate(t, Options{Upstream: up.URL}, alice)
	resp, body := rawDo(t, g.addr, "GET / HTTP/1.1\r\nHost: h\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\n"+
		"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Keep: 1\r\n\r\n")
	var e echoed
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	for _, h := range []string{"Connection", "X-Hop", "Keep-Alive", "Te", "Proxy-Connection", "Upgrade"} {
		if v, ok := e.Header[h]; ok {
			t.Errorf("request hop-by-hop %s reached the upstream: %q", h, v)
		}
	}
	if e.Header.Get("X-Keep") != "1" {
		t.Errorf("end-to-end X-Keep lost")
	}
	for _, h := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("response hop-by-hop %s reached the client: %q", h, v)
		}
	}
	if resp.Header.Get("X-End-To-End") != "yes" {
		t.Errorf("end-to-end response header lost")
	}
	if resp.Close {
		t.Errorf("client connection closed, want keep-alive")
	}
}

func TestPathsAndQueries(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	paths := []string{
		"/",
		"/a/b?x=1&y=%20z",
		"/a%2Fb/c",
		"/%E2%82%AC/x?q=a+b&q=%2F",
		"/a/./b/../c",
		"/search?q=%22quoted%22&empty=&flag",
		"//double//slash",
	}
	for _, prefix := range []string{"", "/app", "/app/"} {
		g := startGate(t, Options{Upstream: up.URL + prefix}, alice)
		for _, path := range paths {
			t.Run(prefix+path, func(t *testing.T) {
				e := rawEcho(t, g, "GET "+path+" HTTP/1.1\r\nHost: h\r\n\r\n")
				want := strings.TrimSuffix(prefix, "/") + path
				if e.URI != want {
					t.Errorf("upstream URI = %q, want %q", e.URI, want)
				}
			})
		}
	}
	// Absolute-form request targets are sent in origin form.
	g := startGate(t, Options{Upstream: up.URL + "/app"}, alice)
	e := rawEcho(t, g, "GET http://h/a%2Fb?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
	if e.URI != "/app/a%2Fb?x=1" {
		t.Errorf("absolute form: upstream URI = %q", e.URI)
	}
}

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(b []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if int64(len(b)) > r.n-r.off {
		b = b[:r.n-r.off]
	}
	for i := range b {
		b[i] = byte((r.off + int64(i)) * 7 % 251)
	}
	r.off += int64(len(b))
	return len(b), nil
}

func patternSHA(n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, &patternReader{n: n})
	return hex.EncodeToString(h.Sum(nil))
}

func TestUploadStreamed(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	g := startGate(t, Options{Upstream: up.URL}, alice)
	const size = 50 << 20
	want := patternSHA(size)
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			var body io.Reader = &patternReader{n: size}
			req, err := http.NewRequest(http.MethodPost, g.url+"/upload?x=1", body)
			if err != nil {
				t.Fatal(err)
			}
			if !chunked {
				req.ContentLength = size
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e echoed
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("status %d: %v", resp.StatusCode, err)
			}
			if e.BodyLen != size || e.BodySHA != want {
				t.Errorf("upstream got %d bytes sha %s, want %d sha %s", e.BodyLen, e.BodySHA, size, want)
			}
			if e.Method != http.MethodPost {
				t.Errorf("method %s", e.Method)
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close() // nothing listens there any more
	g := startGate(t, Options{Upstream: dead}, alice)
	for _, raw := range []string{
		"GET /x HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
		"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
	} {
		resp, body := rawDo(t, g.addr, raw)
		checkErrorAnswer(t, resp, body, http.StatusBadGateway, CodeUpstreamUnavailable)
	}
}

func checkErrorAnswer(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d (%s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
			Msg  string `json:"msg"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.Error.Code != code || e.Error.Msg == "" {
		t.Errorf("error = %+v, want code %s and a message", e.Error, code)
	}
}

// TestUpstreamTimeout: a silent upstream is cut after Timeout, once (a
// timeout is not retried); one that keeps sending is never cut, however
// long the whole answer takes.
func TestUpstreamTimeout(t *testing.T) {
	const timeout = 400 * time.Millisecond
	release := make(chan struct{})
	var slowCalls atomic.Int32
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slowCalls.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		if r.URL.Path == "/trickle" {
			// Slower in total than the trickle gate's timeout (by its own
			// clock, so a slow machine only makes it longer), never silent
			// for more than a small part of it.
			start := time.Now()
			for i := 0; time.Since(start) < 2*trickleTimeout; i++ {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(trickleTimeout / 20)
			}
			fmt.Fprint(w, "done\n")
		}
	}))
	defer close(release)
	g := startGate(t, Options{Upstream: up.URL, Timeout: timeout}, alice)
	resp, body := rawDo(t, g.addr, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	checkErrorAnswer(t, resp, body, http.StatusGatewayTimeout, CodeUpstreamTimeout)
	if n := slowCalls.Load(); n != 1 {
		t.Errorf("the upstream saw the timed-out request %d times; a timeout must not be retried", n)
	}

	g = startGate(t, Options{Upstream: up.URL, Timeout: trickleTimeout}, alice)
	resp, body = rawDo(t, g.addr, "GET /trickle HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(string(body), "done\n") {
		t.Errorf("trickling body cut: %d %q", resp.StatusCode, body)
	}
}

// trickleTimeout is the idle timeout the trickle answer stays well within:
// its gaps are a twentieth of it.
const trickleTimeout = 2 * time.Second

func TestKeepAlivePooling(t *testing.T) {
	conns := make(chan string, 100)
	up := httptest.NewUnstartedServer(http.HandlerFunc(echoHandler))
	up.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns <- c.RemoteAddr().String()
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	g := startGate(t, Options{Upstream: up.URL}, alice)
	for range 20 {
		rawEcho(t, g, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	}
	if n := len(conns); n != 1 {
		t.Errorf("20 sequential requests opened %d upstream connections, want 1", n)
	}
	mfs, err := g.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got uint64
	for _, mf := range mfs {
		if mf.GetName() == "ldapgate_upstream_request_duration_seconds" {
			got = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if got != 20 {
		t.Errorf("upstream_request_duration_seconds observed %d requests, want 20", got)
	}
}

func TestHeadAndExpectContinue(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "1234")
			return
		}
		echoHandler(w, r)
	}))
	g := startGate(t, Options{Upstream: up.URL}, alice)

	resp, body := rawDo(t, g.addr, "HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp.StatusCode != http.StatusOK || resp.ContentLength != 1234 || len(body) != 0 {
		t.Errorf("HEAD: %d, Content-Length %d, %d body bytes", resp.StatusCode, resp.ContentLength, len(body))
	}

	// curl sends Expect: 100-continue for large uploads and waits.
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, " 100 ") {
		t.Fatalf("want 100 Continue, got %q %v", line, err)
	}
	_, _ = br.ReadString('\n') // the blank line after it
	_, _ = io.WriteString(c, "hello")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var e echoed
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if e.BodyLen != 5 || e.Header.Get("Expect") != "" {
		t.Errorf("upstream got %d body bytes and Expect %q", e.BodyLen, e.Header.Get("Expect"))
	}
}

func TestNewRejectsBadUpstream(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:3000", "ftp://h/", "http://", "http://h/?q=1", "http://u:p@h/"} {
		if _, err := New(Options{Upstream: u}, nil, nil); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

// rawUpstream answers every request with resp, byte for byte, then closes
// the connection (its answer says so).
func rawUpstream(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				_, _ = io.WriteString(c, resp)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestResponseHeadersAsUpstreamWrote(t *testing.T) {
	up := rawUpstream(t, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close, x-hop\r\n"+
		"keep-alive: timeout=5\r\nx-hop: 1\r\nx-CamelCase: kept\r\ntransfer-encoding: chunked\r\n\r\n"+
		"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	g := startGate(t, Options{Upstream: up}, alice)
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 { // the client connection outlives the upstream's
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := br.Peek(1); err != nil {
			t.Fatal(err)
		}
		// The answer arrives in one write; check its spelling raw (Go's
		// reader would canonicalise it).
		head, _ := br.Peek(br.Buffered())
		if !strings.Contains(string(head), "\r\nx-CamelCase: kept\r\n") {
			t.Errorf("header spelling not kept:\n%s", head)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello world" {
			t.Errorf("body %q", body)
		}
		if resp.Close {
			t.Errorf("the upstream's Connection: close reached the client")
		}
		for _, h := range []string{"Keep-Alive", "X-Hop"} {
			if v := resp.Header.Values(h); len(v) > 0 {
				t.Errorf("hop-by-hop %s reached the client: %q", h, v)
			}
		}
	}
}

// Header names a lenient upstream might trim into an identity header are
// refused by the server or stripped; none reaches the upstream.
func TestMalformedIdentityNames(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(echoHandler))
	g := startGate(t, Options{Upstream: up.URL}, nil)
	for _, line := range []string{
		"X-Forwarded-User : mallory",
		"X-Forwarded-User\t: mallory",
		" X-Forwarded-User: mallory",
		"X-Forwarded-User:mallory",
		"X-Forwarded-User\r\n : mallory",
		"X-Forwarded-User:\tmallory ",
	} {
		resp, body := rawDo(t, g.addr, "GET / HTTP/1.1\r\nHost: h\r\n"+line+"\r\n\r\n")
		if resp.StatusCode == http.StatusBadRequest {
			continue
		}
		if strings.Contains(string(body), "mallory") {
			t.Errorf("%q reached the upstream: %s", line, body)
		}
	}
}

// An upstream that drops idle keep-alive connections sooner than the pool
// does (Node's default is 5s) must not cost a request an error.
func TestStaleUpstreamConnection(t *testing.T) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(echoHandler))
	up.Config.IdleTimeout = 50 * time.Millisecond
	up.Start()
	t.Cleanup(up.Close)
	g := startGate(t, Options{Upstream: up.URL}, alice)
	for range 3 {
		rawEcho(t, g, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		time.Sleep(200 * time.Millisecond)
	}
	resp, body := rawDo(t, g.addr, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("POST after idle: %d %s", resp.StatusCode, body)
	}
}

// Bodies of known length up to maxBufferedBody are read before the answer
// goes out (the upstream connection is pooled again at once); larger and
// unknown-length ones still stream. Either way the client gets the bytes
// the upstream sent.
func TestSmallBodiesBuffered(t *testing.T) {
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int64
		_, _ = fmt.Sscan(r.URL.Query().Get("n"), &n)
		chunked := r.URL.Query().Get("chunked") != ""
		if !chunked {
			w.Header().Set("Content-Length", fmt.Sprint(n))
		}
		_, _ = io.Copy(w, &patternReader{n: n})
		if chunked {
			// Before net/http would count a small body and set its length.
			w.(http.Flusher).Flush()
		}
	}))
	streamed := make(chan bool, 1)
	g := startGateHook(t, Options{Upstream: up.URL}, alice, func(ctx *fasthttp.RequestCtx) {
		streamed <- ctx.Response.IsBodyStream()
	})
	for _, tc := range []struct {
		query  string
		n      int64
		stream bool
	}{
		{"n=0", 0, false},
		{"n=2", 2, false},
		{fmt.Sprintf("n=%d", maxBufferedBody), maxBufferedBody, false},
		{fmt.Sprintf("n=%d", maxBufferedBody+1), maxBufferedBody + 1, true},
		{"n=100&chunked=1", 100, true},
	} {
		resp, body := rawDo(t, g.addr, "GET /?"+tc.query+" HTTP/1.1\r\nHost: h\r\n\r\n")
		if got := <-streamed; got != tc.stream {
			t.Errorf("%s: streamed %v, want %v", tc.query, got, tc.stream)
		}
		if resp.StatusCode != http.StatusOK || int64(len(body)) != tc.n {
			t.Errorf("%s: status %d, %d body bytes, want 200 and %d", tc.query, resp.StatusCode, len(body), tc.n)
			continue
		}
		h := sha256.Sum256(body)
		if hex.EncodeToString(h[:]) != patternSHA(tc.n) {
			t.Errorf("%s: body differs from what the upstream sent", tc.query)
		}
	}
}

// A small body the upstream cuts short or stalls in is an error answer:
// nothing has gone to the client yet, so it need not get a truncated 200.
func TestSmallBodyFailures(t *testing.T) {
	short := rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly this")
	g := startGate(t, Options{Upstream: short}, alice)
	resp, body := rawDo(t, g.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	checkErrorAnswer(t, resp, body, http.StatusBadGateway, CodeUpstreamUnavailable)

	release := make(chan struct{})
	defer close(release)
	stall := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "the first part")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	g = startGate(t, Options{Upstream: stall.URL, Timeout: 300 * time.Millisecond}, alice)
	resp, body = rawDo(t, g.addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	checkErrorAnswer(t, resp, body, http.StatusGatewayTimeout, CodeUpstreamTimeout)
}
