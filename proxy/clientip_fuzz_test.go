package proxy

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzClientIP: whatever X-Forwarded-For a client sends, the address taken
// is the peer's when the peer is not a trusted proxy, and otherwise the peer
// or an address written in the header — never an invalid one, and never a
// trusted proxy when an untrusted entry lies right of it.
//
//	go test -run '^$' -fuzz FuzzClientIP -fuzztime 30s ./proxy
func FuzzClientIP(f *testing.F) {
	f.Add("203.0.113.9, 10.0.0.1", true)
	f.Add("1.1.1.1, [2001:db8::1]:443, 10.2.2.2", true)
	f.Add("garbage, 10.0.0.1", true)
	f.Add("::ffff:10.0.0.1,,", false)
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}
	f.Fuzz(func(t *testing.T, xff string, fromProxy bool) {
		peer := netip.MustParseAddrPort("192.0.2.1:1000")
		if fromProxy {
			peer = netip.MustParseAddrPort("10.9.9.9:1000")
		}
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		req.Header.Add("X-Forwarded-For", xff)
		ctx.Init(&req, net.TCPAddrFromAddrPort(peer), nil)
		got := ClientIP(&ctx, trusted)
		if !got.IsValid() {
			t.Fatalf("invalid client address from %q", xff)
		}
		if !fromProxy {
			if got != peer.Addr() {
				t.Fatalf("untrusted peer: client %s from %q, want the peer", got, xff)
			}
			return
		}
		if got == peer.Addr() {
			return
		}
		found := false
		for _, item := range strings.Split(string(req.Header.Peek("X-Forwarded-For")), ",") {
			if a, ok := parseXFFItem([]byte(strings.TrimSpace(item))); ok && a == got {
				found = true
			}
		}
		if !found {
			t.Fatalf("client %s is not in %q", got, xff)
		}
	})
}
