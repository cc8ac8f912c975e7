// Package api is the admin API of SPEC §7: directories (CRUD, check, sync,
// preview, migrate, runs), users (list, create local, block, unblock,
// password, delete) and the run-time log level. It is reached through the
// HTTP front, which has already identified the caller (auth.Caller); this
// package decides whether that caller is an admin, or accepts the bearer
// admin token of admin_token_file.
package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/respond"
	"github.com/ldapgate/ldapgate/syncer"
)

// DirectoryManager changes the set of directories (app.Directories).
type DirectoryManager interface {
	Set() *directory.Set
	Create(ctx context.Context, dc config.Directory) (config.Directory, directory.CheckResult, error)
	// Update applies patch (which sees no bind password) to a directory;
	// ErrPasswordRequired if the connection settings change without one.
	Update(ctx context.Context, id uint64, patch func(*config.Directory) error) (config.Directory, error)
	Delete(ctx context.Context, id uint64) (int, error)
	// Refresh re-reads the store's overrides (a migration's naming).
	Refresh(ctx context.Context, id uint64) error
}

// Deps are the API's collaborators. Config.Roles and AdminToken are the
// starting settings; Reload replaces them.
type Deps struct {
	Config     *config.Config
	Store      cache.Backend
	Dirs       DirectoryManager
	Syncer     *syncer.Syncer
	Auth       *auth.Service
	Log        *slog.Logger
	Level      *slog.LevelVar
	AdminToken config.Secret
	// Context, when set, is the parent of every admin call's context. The
	// app cancels it at shutdown once the drain bound has passed, so a
	// long sync started through the API stops instead of writing to a
	// store being closed. Nil means context.Background().
	Context context.Context
}

// API serves the admin routes.
type API struct {
	d  Deps
	st atomic.Pointer[settings]
}

// settings are what a SIGHUP may change. Requests read them through one
// atomic pointer: a request racing a reload sees the old token and roles
// or the new ones, never a mix.
type settings struct {
	token config.Secret
	roles []string
}

// New returns the admin API.
func New(d Deps) *API {
	a := &API{d: d}
	a.st.Store(&settings{token: d.AdminToken, roles: d.Config.Roles})
	return a
}

// Reload applies a new config's admin token (read from admin_token_file
// by config.Load, which fails on a missing or empty file) and roles.
func (a *API) Reload(cfg *config.Config) {
	a.st.Store(&settings{token: cfg.AdminToken, roles: cfg.Roles})
}

// requestTimeout bounds one admin call (a sync of a large directory can
// take minutes; it runs under the syncer's own context and the call joins it).
const requestTimeout = 30 * time.Minute

// Handler answers every path under /auth/v4/ldap, /auth/v4/user and
// /auth/v4/internal.
func (a *API) Handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		// Every route, the log level included, needs an admin: the platform
		// guide's `internal-auth: on` form is served on metrics_listen only
		// (app/ops.go). Here it would let in anyone behind a reverse proxy
		// on the same host, whose requests all come from loopback.
		if !a.isAdmin(ctx) {
			a.deny(ctx)
			return
		}
		path := string(ctx.Path())
		if path == LogLevelPath {
			a.logLevel(ctx)
			return
		}
		c, cancel := context.WithTimeout(a.parent(), requestTimeout)
		defer cancel()
		parts := strings.Split(strings.Trim(strings.TrimPrefix(path, "/auth/v4/"), "/"), "/")
		switch parts[0] {
		case "ldap":
			a.routeLDAP(c, ctx, parts[1:])
		case "user":
			a.routeUser(c, ctx, parts[1:])
		default:
			notFound(ctx)
		}
	}
}

// parent is the parent of every admin call's context (Deps.Context).
func (a *API) parent() context.Context {
	if a.d.Context != nil {
		return a.d.Context
	}
	return context.Background()
}

// isAdmin: an admin session (identified by the front), or the admin token
// as a bearer, compared in constant time.
func (a *API) isAdmin(ctx *fasthttp.RequestCtx) bool {
	st := a.st.Load()
	if u, ok := auth.Caller(ctx); ok && u.Active() && u.Role == st.adminRole() {
		return true
	}
	if !st.token.IsSet() {
		return false
	}
	h := ctx.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(string(h[:len(prefix)]), prefix) {
		return false
	}
	return subtle.ConstantTimeCompare(h[len(prefix):], []byte(st.token.Reveal())) == 1
}

// adminRole is the highest configured role (SPEC §7 names it admin).
func (s *settings) adminRole() string {
	if len(s.roles) > 0 {
		return s.roles[0]
	}
	return "admin"
}

// deny: 401 without credentials, 403 with a non-admin session.
func (a *API) deny(ctx *fasthttp.RequestCtx) {
	if _, ok := auth.Caller(ctx); ok {
		respond.Error(ctx, fasthttp.StatusForbidden, "forbidden", "the admin API needs the admin role", nil)
		return
	}
	respond.Error(ctx, fasthttp.StatusUnauthorized, "unauthorized", "authentication required", nil)
}

func (a *API) logLevel(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		methodNotAllowed(ctx)
		return
	}
	raw, ok := readBody(ctx)
	if !ok {
		return
	}
	l, err := ParseLevel(raw)
	if err != nil {
		respond.Error(ctx, fasthttp.StatusBadRequest, "bad_level", "level must be debug, info, warn or error", nil)
		return
	}
	a.d.Level.Set(l)
	a.d.Log.Info("log level changed", "level", l.String())
	respond.OK(ctx, map[string]string{"level": strings.ToLower(l.String())})
}

// LogLevelPath changes the log level: POST with debug, info, warn or error.
const LogLevelPath = "/auth/v4/internal/settings/log/level"

// ParseLevel reads a log level body: a bare or JSON-quoted level name.
func ParseLevel(raw []byte) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(strings.Trim(strings.TrimSpace(string(raw)), `"`)))
	return l, err
}

func notFound(ctx *fasthttp.RequestCtx) {
	respond.Error(ctx, fasthttp.StatusNotFound, "not_found", "no such endpoint", nil)
}

func methodNotAllowed(ctx *fasthttp.RequestCtx) {
	respond.Error(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method not allowed here", nil)
}

// Errors a DirectoryManager returns; the API maps them to statuses.
var (
	// ErrManagedByConfig: directories from the file are read-only (409).
	ErrManagedByConfig = errors.New("directory is declared in the config file")
	// ErrCheckFailed: the connection check failed; nothing was saved (422).
	ErrCheckFailed = errors.New("directory connection check failed")
	// ErrInvalid: the settings do not validate (422).
	ErrInvalid = errors.New("invalid directory settings")
	// ErrNameTaken: another directory has that name (409).
	ErrNameTaken = errors.New("directory name is taken")
	// ErrNoDirectory: unknown id (404).
	ErrNoDirectory = errors.New("no such directory")
)

// maxBody bounds admin request bodies: they are small JSON documents.
const maxBody = 1 << 20

// body reads the request body through the stream the server hands over
// (StreamRequestBody is on for the proxy's sake), at most maxBody bytes.
func body(ctx *fasthttp.RequestCtx) ([]byte, error) {
	r := ctx.RequestBodyStream()
	if r == nil {
		return ctx.Request.Body(), nil
	}
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %w", err)
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("request body larger than %d bytes", maxBody)
	}
	return b, nil
}

// readBody is body, answering 400 itself on failure.
func readBody(ctx *fasthttp.RequestCtx) ([]byte, bool) {
	b, err := body(ctx)
	if err != nil {
		respond.Error(ctx, fasthttp.StatusBadRequest, "bad_body", err.Error(), nil)
		return nil, false
	}
	return b, true
}
