package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsUpstream is a WebSocket echo server that reports the handshake request
// it received.
func wsUpstream(t *testing.T) (url string, seen <-chan *http.Request) {
	t.Helper()
	ch := make(chan *http.Request, 16)
	// The Origin check is the platform's business; the test sends one to
	// see it pass unchanged.
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/denied") {
			http.Error(w, "no console for you", http.StatusForbidden)
			return
		}
		ch <- r
		c, err := up.Upgrade(w, r, http.Header{"X-Upstream": {"1"}})
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	}))
	return srv.URL, ch
}

func TestWebSocketRoundTrip(t *testing.T) {
	upURL, seen := wsUpstream(t)
	g := startGate(t, Options{Upstream: upURL + "/app"}, alice)

	hdr := http.Header{
		"X_Forwarded_User":  {"mallory"},
		"x-forwarded-role":  {"admin"},
		"X-Forwarded-Email": {"mallory@evil"},
		"Cookie":            {"ldapgate_session=secret; a=1"},
		"Origin":            {"http://app.example"},
	}
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+g.addr+"/console/vm%2F1?token=x", hdr)
	if err != nil {
		t.Fatalf("dial through proxy: %v", err)
	}
	defer c.Close()
	if resp.Header.Get("X-Upstream") != "1" {
		t.Errorf("101 answer lost the upstream's headers: %v", resp.Header)
	}

	r := <-seen
	if r.RequestURI != "/app/console/vm%2F1?token=x" {
		t.Errorf("upstream URI %q", r.RequestURI)
	}
	for name, want := range map[string]string{
		"X-Forwarded-User": "alice@example.org", "X-Forwarded-Role": "admin",
		"X-Forwarded-Email": "alice@example.org", "Cookie": "a=1", "Origin": "http://app.example",
		"X-Forwarded-For": "127.0.0.1",
	} {
		if got := r.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want [%q]", name, got, want)
		}
	}
	for k := range r.Header {
		if strings.Contains(k, "_") {
			t.Errorf("underscore spelling %s reached the upstream", k)
		}
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	msgs := []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte("hello")},
		{websocket.BinaryMessage, []byte{0, 1, 2, 255}},
		{websocket.BinaryMessage, big},
		{websocket.TextMessage, []byte("bye")},
	}
	for _, m := range msgs {
		if err := c.WriteMessage(m.typ, m.data); err != nil {
			t.Fatalf("write: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Errorf("echo of %d-byte message type %d came back as %d bytes type %d", len(m.data), m.typ, len(data), typ)
		}
	}
	if n := g.p.Tunnels(); n != 1 {
		t.Errorf("Tunnels() = %d, want 1", n)
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	_ = c.Close()
	waitFor(t, func() bool { return g.p.Tunnels() == 0 }, "tunnel to end after the client closed")
}

func TestWebSocketCloseEndsTunnels(t *testing.T) {
	upURL, _ := wsUpstream(t)
	g := startGate(t, Options{Upstream: upURL}, alice)
	var conns []*websocket.Conn
	for range 3 {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+g.addr+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	waitFor(t, func() bool { return g.p.Tunnels() == 3 }, "3 tunnels")
	if err := g.p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			t.Errorf("after Close the client read %v, want the connection closed", err)
		}
	}
	waitFor(t, func() bool { return g.p.Tunnels() == 0 }, "no tunnels after Close")
}

func TestWebSocketRefused(t *testing.T) {
	upURL, _ := wsUpstream(t)
	g := startGate(t, Options{Upstream: upURL}, alice)
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+g.addr+"/denied", nil)
	if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil {
		t.Fatalf("dial /denied: %v, want a bad handshake", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "no console") {
		t.Errorf("refusal relayed as %d %q", resp.StatusCode, body)
	}
	// The client connection must not stay a raw pipe to the upstream.
	raw := "GET /denied HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	r, _ := rawDo(t, g.addr, raw)
	if !r.Close {
		t.Errorf("refused upgrade kept the connection open")
	}
	if g.p.Tunnels() != 0 {
		t.Errorf("a refused upgrade left a tunnel")
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHTTPSUpstream(t *testing.T) {
	var lastProto atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastProto.Store(r.Proto)
		if r.URL.Path == "/ws" {
			up := websocket.Upgrader{}
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			typ, msg, err := c.ReadMessage()
			if err == nil {
				_ = c.WriteMessage(typ, msg)
			}
			return
		}
		echoHandler(w, r)
	}))
	srv.EnableHTTP2 = true // ALPN must still settle on HTTP/1.1
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tlsCfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	g := startGate(t, Options{Upstream: srv.URL, TLSConfig: &tls.Config{RootCAs: tlsCfg.RootCAs}}, alice)

	e := rawEcho(t, g, "GET /x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n")
	if e.URI != "/x?y=1" || e.Header.Get("X-Forwarded-User") != "alice@example.org" || lastProto.Load() != "HTTP/1.1" {
		t.Errorf("over TLS: uri %q user %q proto %s", e.URI, e.Header.Get("X-Forwarded-User"), lastProto)
	}

	c, _, err := websocket.DefaultDialer.Dial("ws://"+g.addr+"/ws", nil)
	if err != nil {
		t.Fatalf("WebSocket to an https upstream: %v", err)
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "over tls" {
		t.Errorf("echo over TLS: %q %v", msg, err)
	}
}

// TestUpgradeTLSConfigBuiltOnce: the upgrade dial's TLS config is made in
// New from the caller's, offering only HTTP/1.1, and neither the caller's
// config nor the pool's is changed by it. An upgrade then uses it as is:
// two upgrades handshake with the same config, which stays unchanged.
func TestUpgradeTLSConfigBuiltOnce(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	given := &tls.Config{RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}}
	p, err := New(Options{Upstream: srv.URL, TLSConfig: given}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if p.wsTLS == nil || p.wsTLS == p.tlsConfig || p.wsTLS == given {
		t.Fatalf("upgrade TLS config not built apart in New: %p (pool %p, given %p)", p.wsTLS, p.tlsConfig, given)
	}
	if strings.Join(p.wsTLS.NextProtos, ",") != "http/1.1" || p.wsTLS.ServerName != "127.0.0.1" || p.wsTLS.RootCAs != roots {
		t.Errorf("upgrade TLS config: ALPN %q, server name %q, roots kept %v", p.wsTLS.NextProtos, p.wsTLS.ServerName, p.wsTLS.RootCAs == roots)
	}
	if strings.Join(given.NextProtos, ",") != "h2,http/1.1" || strings.Join(p.tlsConfig.NextProtos, ",") != "h2,http/1.1" {
		t.Errorf("ALPN changed outside upgrades: given %q, pool %q", given.NextProtos, p.tlsConfig.NextProtos)
	}
	built := p.wsTLS
	for i := range 2 {
		c, err := p.dialUpstream(t.Context())
		if err != nil {
			t.Fatalf("upgrade dial %d: %v", i, err)
		}
		proto := c.(*tls.Conn).ConnectionState().NegotiatedProtocol
		c.Close()
		// httptest's server offers only h2: no protocol is agreed, and
		// the connection must not be h2.
		if proto == "h2" {
			t.Errorf("upgrade dial %d negotiated h2", i)
		}
	}
	if p.wsTLS != built || strings.Join(built.NextProtos, ",") != "http/1.1" {
		t.Errorf("upgrade TLS config replaced or changed by dialing: ALPN %q", p.wsTLS.NextProtos)
	}
}
