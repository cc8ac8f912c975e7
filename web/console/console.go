// Package console is the admin console of SPEC §14: server-rendered page
// shells (html/template) and one small embedded script that drives the
// admin API (§7) with same-origin fetch calls. It is a client of that API,
// never a second path to the store: every button is an API call, under the
// same session and the same cross-site rules as any other client.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"log/slog"
	"mime"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
)

//go:embed templates/*.html static/*
var files embed.FS

// Prefix is where the console is mounted.
const Prefix = "/admin"

// csp allows nothing but this origin's own script, style and API calls:
// no inline script or style, no framing, no foreign asset.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Console serves GET /admin and below.
type Console struct {
	log    *slog.Logger
	roles  atomic.Pointer[[]string]
	pages  map[string]*template.Template
	assets map[string]asset
}

// asset is an embedded static file. Pages link it as name?v=<hash>, so it
// may be cached for good: a new build changes the hash.
type asset struct {
	body  []byte
	ctype string
	hash  string
}

// New prepares the console; roles come from cfg (the first is the admin
// role, as for the admin API).
func New(cfg *config.Config, log *slog.Logger) *Console {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{log: log.With("component", "console"), pages: map[string]*template.Template{}, assets: map[string]asset{}}
	c.Reload(cfg)
	// The embedded directory is part of the binary: reading it cannot fail.
	entries, _ := files.ReadDir("static")
	for _, e := range entries {
		b, _ := files.ReadFile("static/" + e.Name())
		sum := sha256.Sum256(b)
		c.assets[e.Name()] = asset{body: b, ctype: mime.TypeByExtension(path.Ext(e.Name())), hash: hex.EncodeToString(sum[:6])}
	}
	funcs := template.FuncMap{"asset": func(name string) string {
		return Prefix + "/static/" + name + "?v=" + c.assets[name].hash
	}}
	for _, p := range []string{"connections", "add", "connection", "run", "users", "settings", "forbidden", "notfound"} {
		c.pages[p] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files,
			"templates/layout.html", "templates/connection_form.html", "templates/"+p+".html"))
	}
	return c
}

// Reload takes a new config's roles (SIGHUP).
func (c *Console) Reload(cfg *config.Config) {
	roles := cfg.Roles
	if len(roles) == 0 {
		roles = []string{"admin"}
	}
	c.roles.Store(&roles)
}

// IsAdmin is the admin API's rule: an active user holding the highest role.
func (c *Console) IsAdmin(u *account.User) bool {
	return u != nil && u.Active() && u.Role == (*c.roles.Load())[0]
}

// pageData is what every template sees.
type pageData struct {
	Title string
	Page  string
	User  string
	// Roles is the JSON list of roles, highest first, for the role pickers.
	Roles string
	// ID and Run are the ids of the connection and run pages.
	ID, Run string
}

var (
	reConnection = regexp.MustCompile(`^/connections/([0-9]+)$`)
	reRun        = regexp.MustCompile(`^/connections/([0-9]+)/runs/([0-9]+)$`)
)

// Serve answers a request under Prefix. caller returns the request's user
// (false without a valid session); it is not called for static assets.
func (c *Console) Serve(ctx *fasthttp.RequestCtx, caller func() (account.User, bool)) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed)
		return
	}
	rest := strings.TrimPrefix(string(ctx.Path()), Prefix)
	if name, ok := strings.CutPrefix(rest, "/static/"); ok {
		c.static(ctx, name)
		return
	}
	u, ok := caller()
	if !ok {
		// Back here after signing in. A relative Location, as web's
		// redirects: behind a TLS-terminating proxy an absolute one built
		// from the request would name the wrong scheme.
		ctx.Response.Header.Set(fasthttp.HeaderLocation, "/login?rd="+url.QueryEscape(string(ctx.Request.Header.RequestURI())))
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		ctx.SetStatusCode(fasthttp.StatusFound)
		return
	}
	d := pageData{User: u.Username, Roles: c.rolesJSON()}
	if !c.IsAdmin(&u) {
		d.Title, d.Page = "Forbidden", "forbidden"
		c.render(ctx, fasthttp.StatusForbidden, d)
		return
	}
	switch {
	case rest == "" || rest == "/":
		d.Title, d.Page = "Synchronization with LDAP", "connections"
	case rest == "/connections/new":
		d.Title, d.Page = "Add connection", "add"
	case rest == "/users":
		d.Title, d.Page = "Users", "users"
	case rest == "/settings":
		d.Title, d.Page = "Log level", "settings"
	case reRun.MatchString(rest):
		m := reRun.FindStringSubmatch(rest)
		d.Title, d.Page, d.ID, d.Run = "Run "+m[2], "run", m[1], m[2]
	case reConnection.MatchString(rest):
		d.Title, d.Page, d.ID = "Connection", "connection", reConnection.FindStringSubmatch(rest)[1]
	default:
		d.Title, d.Page = "Not found", "notfound"
		c.render(ctx, fasthttp.StatusNotFound, d)
		return
	}
	c.render(ctx, fasthttp.StatusOK, d)
}

func (c *Console) rolesJSON() string {
	b, _ := json.Marshal(*c.roles.Load())
	return string(b)
}

func (c *Console) render(ctx *fasthttp.RequestCtx, status int, d pageData) {
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set(fasthttp.HeaderCacheControl, "no-store")
	var buf bytes.Buffer
	if err := c.pages[d.Page].Execute(&buf, d); err != nil {
		c.log.Error("console page", "page", d.Page, "err", err)
		ctx.Error("internal error", fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetStatusCode(status)
	ctx.SetBody(buf.Bytes())
}

func (c *Console) static(ctx *fasthttp.RequestCtx, name string) {
	a, ok := c.assets[name]
	if !ok {
		ctx.Error("not found", fasthttp.StatusNotFound)
		return
	}
	h := &ctx.Response.Header
	h.Set("X-Content-Type-Options", "nosniff")
	if string(ctx.QueryArgs().Peek("v")) == a.hash {
		h.Set(fasthttp.HeaderCacheControl, "public, max-age=31536000, immutable")
	} else {
		h.Set(fasthttp.HeaderCacheControl, "no-cache")
	}
	ctx.SetContentType(a.ctype)
	ctx.SetBody(a.body)
}
