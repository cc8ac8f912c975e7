package web

import (
	"bytes"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/respond"
)

// SPEC §5 "Cross-site requests": a page on another origin must not make an
// admin's browser change anything through the credentials the browser
// attaches on its own (the session cookie, cached Basic credentials).
// SameSite=Lax alone is not enough: a sibling host or port of the same site
// is same-site, and not every client honours it.

// guard is how the cross-site rule treats one of ldapgate's own endpoints.
type guard uint8

const (
	// guardForm: /login and /logout take HTML form posts.
	guardForm guard = iota + 1
	// guardJSON: the token and password endpoints, the logout API and the admin API take
	// JSON bodies, so a browser can only send them cross-origin after a
	// CORS preflight, which ldapgate never grants.
	guardJSON
)

// guarded returns the route and guard of the endpoints the rule covers.
// Proxied paths are not among them: the platform has its own rules.
func guarded(path []byte) (route, guard, bool) {
	switch string(path) {
	case pathToken:
		return routeToken, guardJSON, true
	case pathPassword:
		// A browser's password change is a login too (SPEC §13).
		return routePassword, guardJSON, true
	case pathLogoutAPI:
		return routeLogout, guardJSON, true
	case pathLogin:
		return routeLogin, guardForm, true
	case pathLogout:
		return routeLogout, guardForm, true
	}
	for _, p := range adminPrefixes {
		if hasPathPrefix(path, p) {
			return routeAdmin, guardJSON, true
		}
	}
	return 0, 0, false
}

// credential is the kind of credential a request carries, as far as the
// cross-site rule cares.
type credential uint8

const (
	credNone credential = iota
	// credAmbient: the session cookie or Basic credentials, which a
	// browser attaches to any request to this host, whoever asked for it.
	credAmbient
	// credExplicit: Authorization: Bearer (a session or the admin token)
	// or a session in x-xsrf-token. A page can only add these headers to
	// a cross-origin request after a CORS preflight ldapgate never
	// grants, so whoever sends them is the client itself.
	credExplicit
)

var bearerScheme = []byte("bearer")

// isBearer: the Bearer scheme, followed by a space or a tab as auth reads it.
func isBearer(authz []byte) bool {
	n := len(bearerScheme)
	return len(authz) > n+1 && bytes.EqualFold(authz[:n], bearerScheme) && (authz[n] == ' ' || authz[n] == '\t')
}

func credentialOf(h *fasthttp.RequestHeader, cookieName string) credential {
	authz := h.PeekBytes(headerAuthorization)
	if isBearer(authz) || auth.ValidToken(bytes.TrimSpace(h.PeekBytes(headerXSRF))) {
		return credExplicit
	}
	if isBasic(authz) || auth.ValidToken(h.Cookie(cookieName)) {
		return credAmbient
	}
	return credNone
}

var (
	headerOrigin        = []byte("Origin")
	headerSecFetchSite  = []byte("Sec-Fetch-Site")
	headerXForwardProto = []byte("X-Forwarded-Proto")
	headerXForwardHost  = []byte("X-Forwarded-Host")
)

// refuseCrossSite applies the rule before any handler runs and reports
// whether it answered. Requests with safe methods pass; so do those
// carrying an explicit credential (curl with a token keeps working from
// anywhere) and those with neither Origin nor Sec-Fetch-Site, which no
// browser sends on a POST: the handlers then answer as usual.
// A browser's write from another origin is refused (403) unless it carries
// an explicit credential; a write carrying an ambient credential, or a
// browser's login, must send JSON endpoints application/json (415), the
// one content type an HTML form cannot produce.
func (s *Server) refuseCrossSite(ctx *fasthttp.RequestCtx, st *settings, g guard) bool {
	if ctx.IsGet() || ctx.IsHead() || ctx.IsOptions() {
		return false
	}
	h := &ctx.Request.Header
	browser, own := s.fromOwnOrigin(ctx, st)
	switch credentialOf(h, st.cookieName) {
	case credExplicit:
		if browser && !own {
			// The explicit credential alone decides: the cookie or Basic
			// credentials the browser added must not stand in for it.
			h.DelCookie(st.cookieName)
			if isBasic(h.PeekBytes(headerAuthorization)) {
				h.DelBytes(headerAuthorization)
			}
		}
		return false
	case credNone:
		if !browser {
			return false
		}
	}
	if browser && !own {
		respond.Error(ctx, fasthttp.StatusForbidden, "cross_site_request",
			"refused: this request came from a page of another origin", nil)
		return true
	}
	// ContentLength is -1 for a chunked body, which counts as a body.
	if cl := h.ContentLength(); g == guardJSON && (cl > 0 || cl == -1) && !isJSON(h.ContentType()) {
		respond.Error(ctx, fasthttp.StatusUnsupportedMediaType, "unsupported_media_type",
			"send the body as Content-Type: application/json", nil)
		return true
	}
	return false
}

// fromOwnOrigin reports whether the request is a browser's (it carries
// Origin or Sec-Fetch-Site; a browser sends Origin on every POST) and, if
// so, whether it came from ldapgate's own origin. No page can set either
// header. Sec-Fetch-Site, when present, decides: the browser judged the
// URL it really fetched, while ldapgate's idea of its own origin comes from
// Host, which a proxy in front may have rewritten (nginx's proxy_pass does
// by default) and which carries no scheme. Browsers send it only to
// https and loopback URLs; without it Origin must equal ownOrigin. This is
// the precedence of Go's net/http CrossOriginProtection, plus the scheme,
// trusted proxies, and "none" refused (no address-bar navigation POSTs).
// Origin: null (sandboxed frames, redirects across origins, and any POST
// from a page with Referrer-Policy: no-referrer) is foreign unless
// Sec-Fetch-Site vouches for it.
func (s *Server) fromOwnOrigin(ctx *fasthttp.RequestCtx, st *settings) (browser, own bool) {
	h := &ctx.Request.Header
	origin, site := h.PeekBytes(headerOrigin), h.PeekBytes(headerSecFetchSite)
	switch {
	case len(origin) == 0 && len(site) == 0:
		return false, false
	case len(site) > 0:
		return true, bytes.Equal(site, []byte("same-origin"))
	case bytes.Equal(origin, []byte("null")):
		return true, false
	}
	mine := ownOrigin(ctx, st)
	own = sameOrigin(string(origin), mine)
	if !own {
		// A proxy that rewrites Host without a trusted X-Forwarded-Host
		// shows here as every plain-HTTP browser write refused.
		s.log.Debug("foreign origin", "origin", truncate(string(origin), 256),
			"own_origin", truncate(mine, 256), "path", truncate(string(ctx.Path()), 256))
	}
	return true, own
}

// ownOrigin is the origin the client reached ldapgate at: the scheme of the
// connection and the Host header, or X-Forwarded-Proto and
// X-Forwarded-Host (first item) when the peer is in trusted_proxies, as
// the proxy reports them upstream.
func ownOrigin(ctx *fasthttp.RequestCtx, st *settings) string {
	h := &ctx.Request.Header
	scheme, host := "http", string(h.Host())
	if ctx.IsTLS() {
		scheme = "https"
	}
	if proxy.TrustedPeer(ctx, st.trusted) {
		if p := strings.ToLower(firstItem(h.PeekBytes(headerXForwardProto))); p == "http" || p == "https" {
			scheme = p
		}
		if fh := firstItem(h.PeekBytes(headerXForwardHost)); fh != "" {
			host = fh
		}
	}
	return scheme + "://" + host
}

// sameOrigin compares two serialised origins by scheme, host (ASCII case
// folded) and port (the scheme's default when absent).
func sameOrigin(a, b string) bool {
	sa, ha, pa, ok := splitOrigin(a)
	if !ok {
		return false
	}
	sb, hb, pb, ok := splitOrigin(b)
	return ok && sa == sb && strings.EqualFold(ha, hb) && pa == pb
}

// splitOrigin parses scheme://host[:port] with nothing else (RFC 6454
// serialisation); only http and https are ldapgate's schemes.
func splitOrigin(o string) (scheme, host, port string, ok bool) {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", "", "", false
	}
	scheme, host, port = strings.ToLower(u.Scheme), u.Hostname(), u.Port()
	switch {
	case host == "":
		return "", "", "", false
	case scheme == "http" && port == "":
		port = "80"
	case scheme == "https" && port == "":
		port = "443"
	case scheme != "http" && scheme != "https":
		return "", "", "", false
	}
	return scheme, host, port, true
}

// isJSON: the media type is application/json, parameters (charset) aside.
func isJSON(ct []byte) bool {
	mt, _, _ := bytes.Cut(ct, []byte(";"))
	return bytes.EqualFold(bytes.TrimSpace(mt), []byte("application/json"))
}

func firstItem(v []byte) string {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return string(bytes.TrimSpace(v))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
