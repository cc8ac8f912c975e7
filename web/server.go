// Package web is ldapgate's HTTP front on fasthttp (SPEC §5, §6): the login
// endpoints and page, session endpoints, forward-auth, the admin API mount,
// and every other path to the proxy. It decides who the caller is; auth
// checks the credentials and proxy talks to the upstream.
package web

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/metrics"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/respond"
	"github.com/ldapgate/ldapgate/web/console"
)

// Deps are the front's collaborators (see app.Run).
type Deps struct {
	Config  *config.Config
	Auth    *auth.Service
	Proxy   *proxy.Proxy
	Dirs    *directory.Set
	Log     *slog.Logger
	Metrics *metrics.Metrics
	// Admin serves /auth/v4/ldap, /auth/v4/user and /auth/v4/internal;
	// the caller's user, if any, is recorded with auth.SetCaller first.
	// Nil: those paths answer 404.
	Admin fasthttp.RequestHandler
	// Context is the parent of the store and directory calls a request
	// makes (nil: context.Background()); the app cancels it once requests
	// have drained. Never the *fasthttp.RequestCtx: fasthttp reuses that
	// once the handler returns, and a library may watch a call's context
	// from a goroutine of its own (pgx does) that outlives the handler.
	Context context.Context
}

// settings are the parts of the config a SIGHUP may change; requests read
// them through one atomic pointer, so a reload never races a request.
type settings struct {
	publicPaths []string
	cookieName  string
	secure      bool
	trusted     []netip.Prefix
	// cookieDomain and redirectHosts: session.cookie_domain and
	// login.redirect_hosts (forward-auth across hosts of one site).
	cookieDomain  string
	redirectHosts []string
}

func settingsFrom(cfg *config.Config, log *slog.Logger) *settings {
	st := &settings{
		cookieName:    cfg.Session.CookieName,
		secure:        cfg.SecureCookie(),
		cookieDomain:  cfg.Session.CookieDomain,
		redirectHosts: cfg.Login.RedirectHosts,
	}
	if st.cookieName == "" {
		st.cookieName = config.DefaultCookieName
	}
	for _, p := range cfg.PublicPaths {
		if p = strings.TrimSpace(p); strings.HasPrefix(p, "/") {
			st.publicPaths = append(st.publicPaths, p)
		}
	}
	for _, c := range cfg.TrustedProxies {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			log.Error("trusted_proxies: ignoring bad CIDR", "cidr", c, "err", err)
			continue
		}
		st.trusted = append(st.trusted, p.Masked())
	}
	return st
}

// Server is the HTTP front.
type Server struct {
	d      Deps
	log    *slog.Logger
	st     atomic.Pointer[settings]
	page   *template.Template
	routes *routeMetrics
	// console is the admin console at /admin; nil without Deps.Admin,
	// whose API it drives.
	console *console.Console
}

// New checks deps and prepares the handler.
func New(d Deps) (*Server, error) {
	if d.Config == nil || d.Auth == nil || d.Proxy == nil || d.Dirs == nil {
		return nil, errors.New("web: config, auth, proxy and directories are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	s := &Server{d: d, log: d.Log.With("component", "web"), page: loginPage, routes: newRouteMetrics(d.Metrics)}
	s.st.Store(settingsFrom(d.Config, s.log))
	if d.Admin != nil {
		s.console = console.New(d.Config, d.Log)
	}
	return s, nil
}

// Reload applies a new config's public paths, cookie settings, trusted
// proxies and login limits (SIGHUP). In-flight requests keep the settings
// they started with.
func (s *Server) Reload(cfg *config.Config) {
	s.st.Store(settingsFrom(cfg, s.log))
	s.d.Auth.Reload(cfg)
	if s.console != nil {
		s.console.Reload(cfg)
	}
}

// Handler is the fasthttp handler of the whole front.
func (s *Server) Handler() fasthttp.RequestHandler { return s.serve }

// Paths (SPEC §5, §6, §7).
const (
	pathToken       = "/auth/v4/public/token"
	pathPassword    = "/auth/v4/public/password"
	pathDirectories = "/auth/v4/public/directories"
	pathWhoami      = "/auth/v4/whoami"
	pathTokenPrefix = "/auth/v4/token/"
	pathLogoutAPI   = "/auth/v4/logout"
	pathVerify      = "/auth/v4/verify"
	pathLogin       = "/login"
	pathLogout      = "/logout"
)

// adminPrefixes are mounted on Deps.Admin.
var adminPrefixes = []string{"/auth/v4/ldap", "/auth/v4/user", "/auth/v4/internal"}

// parent is the context of a request's store and directory calls (see
// Deps.Context).
func (s *Server) parent() context.Context {
	if s.d.Context != nil {
		return s.d.Context
	}
	return context.Background()
}

func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	// The server's request time: it reads the clock only once a handler
	// asks when it runs with LazyRequestTime (app does), and is the
	// handler's start time either way.
	start := ctx.Time()
	if start.IsZero() { // a RequestCtx not run by a fasthttp.Server
		start = time.Now()
	}
	st := s.st.Load()
	r := s.dispatch(ctx, st)
	s.routes.observe(r, ctx.Response.StatusCode(), start)
}

func (s *Server) dispatch(ctx *fasthttp.RequestCtx, st *settings) route {
	path := ctx.Path()
	if r, g, ok := guarded(path); ok && s.refuseCrossSite(ctx, st, g) {
		return r
	}
	switch string(path) { // the conversion in a switch does not allocate
	case pathToken:
		if !ctx.IsPost() {
			methodNotAllowed(ctx, fasthttp.MethodPost)
		} else {
			s.tokenLogin(ctx, st)
		}
		return routeToken
	case pathPassword:
		if !ctx.IsPost() {
			methodNotAllowed(ctx, fasthttp.MethodPost)
		} else {
			s.passwordChange(ctx, st)
		}
		return routePassword
	case pathDirectories:
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, fasthttp.MethodGet)
		} else {
			s.directories(ctx)
		}
		return routeDirectories
	case pathLogin:
		switch {
		case ctx.IsGet() || ctx.IsHead():
			s.loginPage(ctx, st)
		case ctx.IsPost():
			s.loginForm(ctx, st)
		default:
			methodNotAllowed(ctx, "GET, POST")
		}
		return routeLogin
	case pathLogout:
		// POST only: a GET could be sent by any page (an <img>, a link).
		if !ctx.IsPost() {
			methodNotAllowed(ctx, fasthttp.MethodPost)
		} else {
			s.logout(ctx, st, true)
		}
		return routeLogout
	case pathLogoutAPI:
		if !ctx.IsPost() {
			methodNotAllowed(ctx, fasthttp.MethodPost)
		} else {
			s.logout(ctx, st, false)
		}
		return routeLogout
	case pathWhoami:
		if !ctx.IsGet() && !ctx.IsHead() {
			methodNotAllowed(ctx, fasthttp.MethodGet)
		} else {
			s.whoami(ctx, st)
		}
		return routeWhoami
	case pathVerify:
		s.verify(ctx, st)
		return routeVerify
	}
	if bytes.HasPrefix(path, []byte(pathTokenPrefix)) {
		if !ctx.IsDelete() {
			methodNotAllowed(ctx, fasthttp.MethodDelete)
		} else {
			s.deleteToken(ctx, string(path[len(pathTokenPrefix):]))
		}
		return routeToken
	}
	for _, p := range adminPrefixes {
		if hasPathPrefix(path, p) {
			s.admin(ctx, st)
			return routeAdmin
		}
	}
	if s.console != nil && hasPathPrefix(path, console.Prefix) {
		s.console.Serve(ctx, func() (account.User, bool) {
			u, err := s.caller(ctx, st)
			return u, err == nil
		})
		return routeAdmin
	}
	if s.isPublic(ctx, path, st) {
		s.d.Proxy.Forward(ctx, nil)
		return routePublic
	}
	u, ok := s.authenticate(ctx, st)
	if !ok {
		return routeProxy
	}
	stripCredentials(&ctx.Request.Header)
	// By address, not copied: u stays on this frame (Forward keeps no
	// reference), so the proxied request allocates no user.
	s.d.Proxy.Forward(ctx, &u)
	return routeProxy
}

// hasPathPrefix: path is p or below it ("/auth/v4/user" and
// "/auth/v4/user/7", not "/auth/v4/users").
func hasPathPrefix(path []byte, p string) bool {
	return bytes.HasPrefix(path, []byte(p)) && (len(path) == len(p) || path[len(p)] == '/')
}

// isPublic: both the normalised path (what routing sees: dots resolved,
// %2F decoded) and the raw one (what the upstream receives) must be
// under a public prefix. Either alone can be fooled: "/static/../admin"
// is raw-public only, "/admin/..%2F..%2Fstatic/x" normalised-public only.
func (s *Server) isPublic(ctx *fasthttp.RequestCtx, path []byte, st *settings) bool {
	if len(st.publicPaths) == 0 {
		return false
	}
	raw := ctx.Request.Header.RequestURI()
	if i := bytes.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	for _, p := range st.publicPaths {
		if bytes.HasPrefix(path, []byte(p)) && bytes.HasPrefix(raw, []byte(p)) {
			return true
		}
	}
	return false
}

// authenticate finds the caller from a session token or Basic
// credentials. When there is none it answers: browsers (Accept:
// text/html) are sent to the login page, API clients get 401 JSON.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx, st *settings) (account.User, bool) {
	u, err := s.caller(ctx, st)
	switch {
	case err == nil:
		return u, true
	case errors.Is(err, auth.ErrNoSession) && wantsHTML(ctx) && (ctx.IsGet() || ctx.IsHead()):
		redirect(ctx, pathLogin+"?rd="+queryEscape(ctx.Request.Header.RequestURI()), fasthttp.StatusFound)
		noStore(ctx)
	default:
		refuse(ctx, err)
	}
	return account.User{}, false
}

// refuse answers a caller error: 401 JSON when there are no (valid)
// credentials, else loginError's answer for the Basic failure.
func refuse(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, auth.ErrNoSession) {
		respond.Error(ctx, fasthttp.StatusUnauthorized, "unauthorized", "authentication required", nil)
	} else {
		loginError(ctx, err)
	}
}

var basicScheme = []byte("basic")

// isBasic reports whether an Authorization value uses the Basic scheme the
// way auth.ParseBasic reads it: a space or a tab after the name. Read only
// with a space, "Basic\t<credentials>" was neither used nor stripped, and
// reached the upstream with the user's password (FuzzStripCredentials).
func isBasic(authz []byte) bool {
	n := len(basicScheme)
	return len(authz) > n && bytes.EqualFold(authz[:n], basicScheme) && (authz[n] == ' ' || authz[n] == '\t')
}

// caller returns the request's user: a session (Bearer, x-xsrf-token,
// cookie) or Basic credentials. auth.ErrNoSession when there are none or
// they are not valid sessions; Basic failures are returned as they are
// (401/403/429/503). The user is returned by value so that callers keep
// it on their stack: a pointer here would cost every proxied request a
// heap allocation of the whole User.
func (s *Server) caller(ctx *fasthttp.RequestCtx, st *settings) (account.User, error) {
	u, _, err := s.d.Auth.RequestSession(s.parent(), &ctx.Request.Header, st.cookieName)
	if err == nil {
		return u, nil
	}
	if !errors.Is(err, auth.ErrNoSession) {
		s.log.Error("session check failed", "err", err)
		if errors.Is(err, cache.ErrUnavailable) {
			// SPEC §12: fail closed with a 503, never on a stale cache.
			return account.User{}, err
		}
	}
	if authz := ctx.Request.Header.PeekBytes(headerAuthorization); isBasic(authz) {
		name, pw, ok := auth.ParseBasic(authz)
		if !ok {
			return account.User{}, auth.ErrBadCredentials
		}
		return s.d.Auth.Basic(s.parent(), name, pw, s.clientIP(ctx, st))
	}
	return account.User{}, auth.ErrNoSession
}

var (
	headerAuthorization = []byte("Authorization")
	headerXSRF          = []byte("X-Xsrf-Token")
)

// stripCredentials removes ldapgate's own credentials from a request about
// to be proxied: the upstream trusts the identity headers, and must never
// see a session token it could replay here, nor a Basic password (the
// user's directory password). Only the carriers ldapgate reads are touched:
// Authorization when it is Basic or a Bearer token auth.RequestTokens
// accepts, and x-xsrf-token when RequestTokens accepts it; the session
// cookie is the proxy's to drop. Asking auth rather than parsing again
// keeps the two in step: a token read from "Bearer\t<token>" is stripped too.
func stripCredentials(h *fasthttp.RequestHeader) {
	toks := auth.RequestTokens(h, "")
	if toks[0] != nil || isBasic(h.PeekBytes(headerAuthorization)) {
		h.DelBytes(headerAuthorization)
	}
	if toks[1] != nil {
		h.DelBytes(headerXSRF)
	}
}

func (s *Server) clientIP(ctx *fasthttp.RequestCtx, st *settings) netip.Addr {
	return proxy.ClientIP(ctx, st.trusted)
}

func wantsHTML(ctx *fasthttp.RequestCtx) bool {
	return bytes.Contains(ctx.Request.Header.Peek(fasthttp.HeaderAccept), []byte("text/html"))
}

func (s *Server) admin(ctx *fasthttp.RequestCtx, st *settings) {
	if s.d.Admin == nil {
		respond.Error(ctx, fasthttp.StatusNotFound, "not_found", "no such endpoint", nil)
		return
	}
	u, err := s.caller(ctx, st)
	switch {
	case err == nil:
		auth.SetCaller(ctx, &u)
	case errors.Is(err, auth.ErrNoSession):
		// The admin API also takes its own bearer admin token.
	default:
		loginError(ctx, err)
		return
	}
	s.d.Admin(ctx)
}

// requireCaller is caller for the endpoints that answer rather than
// redirect: without a valid caller it refuses and reports false.
func (s *Server) requireCaller(ctx *fasthttp.RequestCtx, st *settings) (account.User, bool) {
	u, err := s.caller(ctx, st)
	if err != nil {
		refuse(ctx, err)
		return account.User{}, false
	}
	return u, true
}

func (s *Server) whoami(ctx *fasthttp.RequestCtx, st *settings) {
	u, ok := s.requireCaller(ctx, st)
	if !ok {
		return
	}
	noStore(ctx)
	respond.OK(ctx, &u)
}

// verify is the forward-auth endpoint (nginx auth_request, Traefik
// forwardAuth, Caddy forward_auth): 200 with the identity headers on the
// answer, 401 otherwise. The request's own identity headers are never
// echoed: only SetIdentity writes them.
//
// With ?redirect=login (Traefik, Caddy: they hand the answer to the
// browser) a browser without a session is sent to the login page instead,
// with rd the page it asked for, rebuilt from X-Forwarded-Proto, -Host and
// -Uri and kept only if its host is one rd may name (SPEC §6). nginx
// needs the plain 401: auth_request takes any other status as an error.
func (s *Server) verify(ctx *fasthttp.RequestCtx, st *settings) {
	u, err := s.caller(ctx, st)
	if errors.Is(err, auth.ErrNoSession) && wantsHTML(ctx) &&
		string(ctx.QueryArgs().Peek("redirect")) == "login" {
		rd, _ := SafeRedirectTo(forwardedURL(&ctx.Request.Header), string(ctx.Host()), st.redirectHosts)
		redirect(ctx, pathLogin+"?rd="+url.QueryEscape(rd), fasthttp.StatusFound)
		noStore(ctx)
		return
	}
	if err != nil {
		refuse(ctx, err)
		return
	}
	noStore(ctx)
	s.d.Proxy.SetIdentity(&ctx.Response.Header, &u)
	ctx.SetStatusCode(fasthttp.StatusOK)
}

// forwardedURL is the URL a front proxy was asked for, from its
// X-Forwarded-Proto, -Host and -Uri; "" when it did not say.
func forwardedURL(h *fasthttp.RequestHeader) string {
	proto := strings.ToLower(string(h.Peek("X-Forwarded-Proto")))
	host, uri := string(h.Peek("X-Forwarded-Host")), string(h.Peek("X-Forwarded-Uri"))
	if host == "" || (proto != "http" && proto != "https") {
		return uri // a path of its own, or "" (then "/")
	}
	if !strings.HasPrefix(uri, "/") {
		uri = "/"
	}
	return proto + "://" + host + uri
}

func (s *Server) directories(ctx *fasthttp.RequestCtx) {
	respond.OK(ctx, respond.NewList(directoryList(s.d.Dirs.List())))
}

type directoryItem struct {
	ID     uint64 `json:"id"`
	Name   string `json:"name"`
	Domain string `json:"domain"`
	Type   string `json:"type"`
}

func directoryList(dirs []*directory.Entry) []directoryItem {
	out := make([]directoryItem, 0, len(dirs))
	for _, e := range dirs {
		out = append(out, directoryItem{ID: e.Config.ID, Name: e.Config.Name, Domain: e.Config.DomainName(), Type: e.Config.Type})
	}
	return out
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	respond.Error(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method not allowed", nil)
}

func noStore(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
}
