package proxy

import (
	"bytes"
	"net/netip"
	"slices"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
)

// Header names predeclared once: the hot path allocates none.
var (
	strXFF        = []byte("X-Forwarded-For")
	strXFP        = []byte("X-Forwarded-Proto")
	strXFH        = []byte("X-Forwarded-Host")
	strXRealIP    = []byte("X-Real-IP")
	strCookie     = []byte("Cookie")
	strConnection = []byte("Connection")
	strUpgrade    = []byte("Upgrade")
	strWebSocket  = []byte("websocket")
	strHTTP       = []byte("http")
	strHTTPS      = []byte("https")
	strCommaSpace = []byte(", ")
	strOokie      = []byte("ookie")
	strOOKIE      = []byte("OOKIE")
)

type headerKind uint8

const (
	kindNone headerKind = iota
	kindIdentity
	kindXFF
	kindXFP
	kindXFH
	kindRealIP
	kindForwarded
	kindConnection
	kindHop
	kindCookie
)

// headerRule matches a header name lower-cased with '_' read as '-'. The
// '_' folding is the fix of CVE-2025-64484 (oauth2-proxy): servers and
// frameworks that map '-' to '_' (CGI, WSGI, PHP, nginx with
// underscores_in_headers) see X_Forwarded_User as X-Forwarded-User, so a
// client copy under either spelling would pass as the proxy's own.
type headerRule struct {
	norm string
	kind headerKind
}

func buildTable(n identityNames) []headerRule {
	var rules []headerRule
	// The default names go too when others are configured: an operator
	// who renamed them may still run something that reads the defaults.
	for _, name := range []string{
		string(n.user), string(n.email), string(n.role), string(n.groups),
		DefaultUserHeader, DefaultEmailHeader, DefaultRoleHeader, DefaultGroupsHeader,
	} {
		r := headerRule{foldName([]byte(name)), kindIdentity}
		if !slices.Contains(rules, r) {
			rules = append(rules, r)
		}
	}
	return append(rules, []headerRule{
		// The X-Forwarded-* set is ours to set; client copies (any
		// spelling) go, except the canonical ones of a trusted proxy,
		// which are read before they go.
		{"x-forwarded-for", kindXFF},
		{"x-forwarded-proto", kindXFP},
		{"x-forwarded-host", kindXFH},
		// Upstreams log and rate-limit by X-Real-IP (nginx's realip
		// module reads it): it is the client address as ldapgate
		// determined it, never the client's claim.
		{"x-real-ip", kindRealIP},
		// RFC 7239 carries the same claims; an upstream that reads it
		// must not believe a client's.
		{"forwarded", kindForwarded},
		// Hop-by-hop headers, RFC 9110 §7.6.1. Transfer-Encoding and
		// the body framing are fasthttp's to write.
		{"connection", kindConnection},
		{"keep-alive", kindHop},
		{"proxy-connection", kindHop},
		{"te", kindHop},
		{"trailer", kindHop},
		{"transfer-encoding", kindHop},
		{"upgrade", kindHop},
		// The server already answered 100-continue to the client; the
		// upstream gets the body without waiting.
		{"expect", kindHop},
		{"cookie", kindCookie},
	}...)
}

// foldName lower-cases b and reads '_' as '-'.
func foldName(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = foldByte(c)
	}
	return string(out)
}

func foldByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

func (p *Proxy) classify(key []byte) headerKind {
	for i := range p.table {
		r := &p.table[i]
		if len(r.norm) == len(key) && equalFolded(key, r.norm) {
			return r.kind
		}
	}
	return kindNone
}

func equalFolded(k []byte, norm string) bool {
	for i, c := range k {
		if foldByte(c) != norm[i] {
			return false
		}
	}
	return true
}

// equalFold is a case-insensitive ASCII compare without the '_' folding:
// what a trusted proxy wrote is only believed under the real name.
func equalFold(k []byte, lower string) bool {
	if len(k) != len(lower) {
		return false
	}
	for i, c := range k {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// canonicalName normalises a configured header name the way fasthttp
// normalises received ones, so SetCanonical and the strip pass agree.
func canonicalName(name, def string) []byte {
	if name == "" {
		name = def
	}
	b := []byte(name)
	upper := true
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		upper = c == '-'
		b[i] = c
	}
	return b
}

// scratch holds per-request buffers, pooled so a request allocates none.
type scratch struct {
	del    []byte // names to delete, concatenated
	delEnd []int
	conn   []byte // Connection values, comma-joined
	xff    []byte
	xfp    []byte
	xfh    []byte
	val    []byte
	cookie []byte
	uri    []byte
	body   []byte // a small upstream body (bufferSmallBody)
}

func (s *scratch) reset() {
	s.del = s.del[:0]
	s.delEnd = s.delEnd[:0]
	s.conn = s.conn[:0]
	s.xff = s.xff[:0]
	s.xfp = s.xfp[:0]
	s.xfh = s.xfh[:0]
}

func (s *scratch) markDelete(k []byte) {
	s.del = append(s.del, k...)
	s.delEnd = append(s.delEnd, len(s.del))
}

type headerDeleter interface{ DelBytes([]byte) }

// deleteMarked deletes the marked names, then the headers the Connection
// values list (RFC 9110 §7.6.1), except names that frame the message.
// It reports whether the Connection list named Cookie.
func (s *scratch) deleteMarked(h headerDeleter) (cookieListed bool) {
	start := 0
	for _, end := range s.delEnd {
		h.DelBytes(s.del[start:end])
		start = end
	}
	rest := s.conn
	for len(rest) > 0 {
		var tok []byte
		if i := bytes.IndexByte(rest, ','); i >= 0 {
			tok, rest = rest[:i], rest[i+1:]
		} else {
			tok, rest = rest, nil
		}
		tok = bytes.TrimSpace(tok)
		switch {
		case len(tok) == 0, equalFold(tok, "close"), equalFold(tok, "keep-alive"),
			equalFold(tok, "upgrade"), equalFold(tok, "host"),
			equalFold(tok, "content-length"), equalFold(tok, "transfer-encoding"):
			continue
		case equalFold(tok, "cookie"):
			cookieListed = true
		}
		h.DelBytes(tok)
	}
	return cookieListed
}

// prepare rewrites the request headers for the upstream: removes client
// identity headers (all spellings), hop-by-hop headers and the session
// cookie, and sets X-Forwarded-* and the identity of u.
func (p *Proxy) prepare(ctx *fasthttp.RequestCtx, u *account.User, s *scratch, websocket bool) {
	h := &ctx.Request.Header
	peer := peerAddr(ctx)
	trusted := isTrusted(peer, p.trusted)
	// Before the strip pass below removes the X-Forwarded-For it reads.
	client := peer
	if trusted {
		client = ClientIP(ctx, p.trusted)
	}
	s.reset()
	hasCookie := false
	for k, v := range h.All() {
		switch p.classify(k) {
		case kindNone:
			continue
		case kindCookie:
			hasCookie = true
			continue
		case kindXFF:
			if trusted && equalFold(k, "x-forwarded-for") && len(bytes.TrimSpace(v)) > 0 {
				if len(s.xff) > 0 {
					s.xff = append(s.xff, strCommaSpace...)
				}
				s.xff = append(s.xff, bytes.TrimSpace(v)...)
			}
		case kindXFP:
			if trusted && equalFold(k, "x-forwarded-proto") && len(s.xfp) == 0 {
				s.xfp = append(s.xfp, firstListItem(v)...)
			}
		case kindXFH:
			if trusted && equalFold(k, "x-forwarded-host") && len(s.xfh) == 0 {
				s.xfh = append(s.xfh, firstListItem(v)...)
			}
		case kindConnection:
			s.conn = append(append(s.conn, v...), ',')
		}
		s.markDelete(k)
	}
	if s.deleteMarked(h) {
		hasCookie = false
	}

	// X-Forwarded-For: a trusted proxy's list gains its address; anyone
	// else's list is replaced by the peer address alone.
	s.val = s.val[:0]
	if trusted && len(s.xff) > 0 {
		s.val = append(append(s.val, s.xff...), strCommaSpace...)
	}
	if peer.IsValid() {
		s.val = peer.AppendTo(s.val)
		h.SetCanonical(strXFF, s.val)
	}
	if client.IsValid() {
		s.val = client.AppendTo(s.val[:0])
		h.SetCanonical(strXRealIP, s.val)
	}
	proto := strHTTP
	if ctx.IsTLS() {
		proto = strHTTPS
	}
	if trusted && (equalFold(s.xfp, "http") || equalFold(s.xfp, "https")) {
		proto = s.xfp
	}
	h.SetCanonical(strXFP, proto)
	host := h.Host()
	if trusted && len(s.xfh) > 0 {
		host = s.xfh
	}
	if len(host) > 0 {
		h.SetCanonical(strXFH, host)
	}

	if u != nil {
		p.setIdentity(h, u, s)
	}
	if len(p.cookieName) > 0 && (hasCookie || mayHaveCookie(h.RawHeaders())) {
		p.rewriteCookies(h, s)
	}
	if websocket {
		h.SetCanonical(strConnection, strUpgrade)
		h.SetCanonical(strUpgrade, strWebSocket)
	}
}

func firstListItem(v []byte) []byte {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return bytes.TrimSpace(v)
}

// headerSetter is what RequestHeader and ResponseHeader share for setting
// a header under a canonical name.
type headerSetter interface {
	SetCanonical(key, value []byte)
}

// setIdentity writes u's identity headers. Email and groups are left out
// when empty: the client copies are gone, so absence means "none".
func (p *Proxy) setIdentity(h headerSetter, u *account.User, s *scratch) {
	s.val = append(s.val[:0], u.Username...)
	h.SetCanonical(p.names.user, s.val)
	s.val = append(s.val[:0], u.Role...)
	h.SetCanonical(p.names.role, s.val)
	if u.Email != "" {
		s.val = append(s.val[:0], u.Email...)
		h.SetCanonical(p.names.email, s.val)
	}
	if len(u.Groups) > 0 {
		s.val = s.val[:0]
		for i, g := range u.Groups {
			if i > 0 {
				s.val = append(s.val, ',')
			}
			s.val = append(s.val, g...)
		}
		h.SetCanonical(p.names.groups, s.val)
	}
}

// SetIdentity writes the identity headers for u onto h (the forward-auth 200
// answer, SPEC §6). Nothing is written for a nil u. All four are always
// there, an empty email or groups list as an empty value: a front proxy
// copying a header the answer lacks may leave the client's copy in place,
// or (Caddy 2.6's copy_headers) send its own unexpanded placeholder.
func (p *Proxy) SetIdentity(h *fasthttp.ResponseHeader, u *account.User) {
	if u == nil {
		return
	}
	s := p.getScratch()
	defer p.scratch.Put(s)
	p.setIdentity(h, u, s)
	if u.Email == "" {
		h.SetCanonical(p.names.email, nil)
	}
	if len(u.Groups) == 0 {
		h.SetCanonical(p.names.groups, nil)
	}
}

// mayHaveCookie is a cheap pre-check on the received header block: a Cookie
// header fasthttp's parser dropped (a value with '"' or '\') still counts.
func mayHaveCookie(raw []byte) bool {
	return bytes.Contains(raw, strOokie) || bytes.Contains(raw, strOOKIE)
}

// rewriteCookies removes the session cookie and keeps the others as the
// client wrote them. fasthttp re-serialises parsed cookies (quotes dropped,
// some values skipped), so the kept pairs are cut from the received header
// block and set back as one raw header.
func (p *Proxy) rewriteCookies(h *fasthttp.RequestHeader, s *scratch) {
	raw := h.RawHeaders()
	if len(raw) == 0 {
		// A request built in code, not parsed: only the parsed form exists.
		h.DelCookieBytes(p.cookieName)
		return
	}
	s.cookie = s.cookie[:0]
	// A plain line scan of the received block: fasthttp validated it when
	// parsing, so re-running its scanner (AllInOrder) only costs time.
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		if len(line) < len("cookie:") || !equalFold(line[:len("cookie:")], "cookie:") {
			continue
		}
		v := line[len("cookie:"):]
		for len(v) > 0 {
			var pair []byte
			if i := bytes.IndexByte(v, ';'); i >= 0 {
				pair, v = v[:i], v[i+1:]
			} else {
				pair, v = v, nil
			}
			pair = bytes.TrimSpace(pair)
			if len(pair) == 0 {
				continue
			}
			name := pair
			if i := bytes.IndexByte(pair, '='); i >= 0 {
				name = bytes.TrimSpace(pair[:i])
			}
			if bytes.Equal(name, p.cookieName) {
				continue
			}
			if len(s.cookie) > 0 {
				s.cookie = append(s.cookie, ';', ' ')
			}
			s.cookie = append(s.cookie, pair...)
		}
	}
	h.DelAllCookies()
	if len(s.cookie) == 0 {
		return
	}
	// With special headers off for this one call the value lands in the
	// plain header list and is written verbatim.
	wasDisabled := h.DisableSpecialHeader()
	h.SetCanonical(strCookie, s.cookie)
	if !wasDisabled {
		h.EnableSpecialHeader()
	}
}

// cleanResponse drops hop-by-hop headers from the upstream's answer; the
// connection to the client is the server's, not the upstream's, to close.
func (p *Proxy) cleanResponse(h *fasthttp.ResponseHeader, s *scratch) {
	s.reset()
	for k, v := range h.All() {
		switch p.classify(k) {
		case kindConnection:
			s.conn = append(append(s.conn, v...), ',')
		case kindHop:
		default:
			continue
		}
		s.markDelete(k)
	}
	s.deleteMarked(h)
	h.ResetConnectionClose()
}

// isWebSocketUpgrade: Connection lists "upgrade" and Upgrade names
// websocket (RFC 6455 §4.1).
func isWebSocketUpgrade(h *fasthttp.RequestHeader) bool {
	if !h.ConnectionUpgrade() {
		return false
	}
	v := h.PeekBytes(strUpgrade)
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		if equalFold(bytes.TrimSpace(tok), "websocket") {
			return true
		}
	}
	return false
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
