package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"sync"

	"github.com/valyala/fasthttp"
)

// peerAddr is the socket peer of ctx, IPv4-mapped addresses unmapped.
func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	switch a := ctx.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}

// TrustedPeer reports whether the socket peer of ctx is in trusted: only
// then are its X-Forwarded-* headers believed.
func TrustedPeer(ctx *fasthttp.RequestCtx, trusted []netip.Prefix) bool {
	return isTrusted(peerAddr(ctx), trusted)
}

var xffPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// ClientIP is the client's address: the socket peer, unless the peer is in
// trusted, in which case the right-most X-Forwarded-For entry that is not
// itself a trusted proxy. Entries left of it were written by whoever the
// client is and prove nothing. If every entry is trusted the left-most one
// is the client; an unparsable entry ends the walk at the last good one.
func ClientIP(ctx *fasthttp.RequestCtx, trusted []netip.Prefix) netip.Addr {
	peer := peerAddr(ctx)
	if !isTrusted(peer, trusted) {
		return peer
	}
	bp := xffPool.Get().(*[]byte) //nolint:forcetypeassert // the pool holds only *[]byte
	defer xffPool.Put(bp)
	list := (*bp)[:0]
	for k, v := range ctx.Request.Header.All() {
		if equalFold(k, "x-forwarded-for") {
			list = append(append(list, v...), ',')
		}
	}
	*bp = list
	best := peer
	for len(list) > 0 {
		var item []byte
		if i := bytes.LastIndexByte(list, ','); i >= 0 {
			item, list = list[i+1:], list[:i]
		} else {
			item, list = list, nil
		}
		item = bytes.TrimSpace(item)
		if len(item) == 0 {
			continue
		}
		a, ok := parseXFFItem(item)
		if !ok {
			return best
		}
		if !isTrusted(a, trusted) {
			return a
		}
		best = a
	}
	return best
}

// parseXFFItem accepts an address, optionally with a port or in brackets.
func parseXFFItem(b []byte) (netip.Addr, bool) {
	s := string(b) // small; the compiler keeps it off the heap when it can
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}
