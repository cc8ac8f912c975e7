// Package app wires ldapgate together: the store, the directories, the
// syncer and its schedules, the login service, the proxy, the HTTP front
// with the admin API, and the metrics listener. `serve` and `demo` both run
// exactly this; the demo only supplies a config.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/api"
	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/listener"
	"github.com/ldapgate/ldapgate/metrics"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/syncer"
	"github.com/ldapgate/ldapgate/web"
)

// Options are what the command line adds to the config.
type Options struct {
	Version string
	// SyncAtStart syncs every directory once before serving (the demo).
	SyncAtStart bool
	// Ready is called once both listeners accept connections.
	Ready func()
	// Logger overrides the JSON logger on stderr (tests).
	Logger *slog.Logger
	// ShutdownTimeout bounds draining in-flight requests (default
	// DefaultShutdownTimeout); what still runs then is cut.
	ShutdownTimeout time.Duration
}

// Run serves until ctx ends, then shuts down gracefully: stop accepting,
// drain in-flight requests (bounded), cancel syncs (no partial batch is
// ever written: each batch is one transaction), close the store.
func Run(ctx context.Context, cfg *config.Config, opt Options) error {
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level.Set(slog.LevelInfo)
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if opt.ShutdownTimeout == 0 {
		opt.ShutdownTimeout = DefaultShutdownTimeout
	}
	log.Info("starting ldapgate", "version", opt.Version, "config", cfg)
	for _, w := range cfg.Warnings() {
		log.Warn("config: "+w.Msg, "key", w.Path, "line", w.Line)
	}

	m := metrics.NewReplica(cfg.ReplicaName)
	store, err := openStore(ctx, cfg, log, m)
	if err != nil {
		return err
	}
	defer store.Close()

	dirs := newDirectories(store, log, m)
	defer dirs.Close()
	sync_ := syncer.New(store, dirs.Set(), cfg.Roles, log, m)
	dirs.syncer = sync_
	if err := dirs.Load(ctx, cfg); err != nil {
		return err
	}
	if err := auth.SyncLocalUsers(ctx, store, cfg.LocalUsers); err != nil {
		return fmt.Errorf("local users: %w", err)
	}

	authSvc, err := auth.New(auth.Deps{Config: cfg, Store: store, Dirs: dirs.Set(), Syncer: sync_, Log: log, Metrics: m})
	if err != nil {
		return err
	}
	defer authSvc.Close()
	// work is the parent of admin calls (an API sync can take minutes). It
	// is not ctx: a signal must first let in-flight requests drain; work
	// ends when the drain bound has passed.
	work, endWork := context.WithCancel(context.WithoutCancel(ctx))
	defer endWork()
	admin := api.New(api.Deps{
		Config: cfg, Store: store, Dirs: dirs, Syncer: sync_, Auth: authSvc, Log: log, Level: level,
		AdminToken: cfg.AdminToken, Context: work,
	})
	fr := &frontend{auth: authSvc, dirs: dirs.Set(), admin: admin.Handler(), log: log, m: m, work: work}
	if err := fr.apply(cfg); err != nil {
		return err
	}
	defer fr.close()

	// Background work has one owner: this function. wg waits for it.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := sync_.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("scheduler stopped", "err", err)
		}
	})

	if opt.SyncAtStart {
		for _, e := range dirs.Set().List() {
			run, err := sync_.Sync(ctx, e.Config.ID, syncer.Options{Trigger: syncer.TriggerStart})
			if err != nil {
				log.Warn("initial sync failed", "directory", e.Config.Name, "err", err)
				continue
			}
			log.Info("initial sync", "directory", e.Config.Name, "result", run.Result, "counts", run.Counts)
		}
	}

	// inflight counts handlers still running: the drain below is bounded,
	// and a handler it gave up on may still write to the store, which
	// must outlive it.
	var inflight handlerCount
	srv := &fasthttp.Server{
		Handler:               inflight.track(fr.serve),
		Name:                  "ldapgate",
		NoDefaultServerHeader: true,
		// Bodies stream through the proxy: a 200 MiB upload must not be
		// buffered in memory.
		StreamRequestBody: true,
		// ReadTimeout bounds the wait for the headers (from the connection's
		// opening, or a keep-alive request's first byte): a client that
		// trickles them in is dropped. Once they are in, HeaderReceived
		// gives the body its own, longer bound.
		ReadTimeout:                  cfg.Server.ReadHeaderTimeout.D(),
		HeaderReceived:               bodyTimeout,
		IdleTimeout:                  cfg.Server.IdleTimeout.D(),
		SecureErrorLogMessage:        true,
		ReadBufferSize:               16 << 10,
		DisablePreParseMultipartForm: true,
		// The request time is read when the front asks for it (once, for
		// its duration metric) rather than also before every handler call.
		LazyRequestTime: true,
		CloseOnShutdown: true,
		Logger:          fasthttpLog{log},
	}
	lim := listener.Limits{MaxConns: cfg.Server.MaxConns, MaxConnsPerIP: cfg.Server.MaxConnsPerIP}
	raw, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	ln := listener.Wrap(raw, "listen", lim, log, m)
	ops, err := newOpsServer(cfg, store, dirs.Set(), m, log, level)
	if err != nil {
		ln.Close()
		return err
	}
	serveErr := make(chan error, 2)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	wg.Go(func() { serveErr <- ops.serve() })
	log.Info("serving", "listen", ln.Addr().String(), "metrics_listen", ops.addr(), "upstream", cfg.Upstream,
		"directories", len(dirs.Set().List()))
	if opt.Ready != nil {
		opt.Ready()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-serveErr:
			runErr = fmt.Errorf("listener stopped: %w", err)
			break loop
		case <-hup:
			reload(ctx, cfg, reloadTargets{dirs: dirs, admin: admin, fr: fr, syncer: sync_, store: store}, log)
		}
	}

	log.Info("shutting down")
	shutCtx, shutCancel := context.WithTimeout(context.Background(), opt.ShutdownTimeout)
	defer shutCancel()
	if err := srv.ShutdownWithContext(shutCtx); err != nil {
		log.Warn("draining requests", "err", err)
	}
	ops.shutdown(shutCtx)
	// The drain bound has passed (or nothing was left): what still runs
	// is cut now, not awaited, so the bound is the one the README gives.
	// Upstream requests end with 502, syncs are cancelled between batches.
	fr.cut()
	cancel()
	endWork()
	wg.Wait()
	if n := inflight.wait(handlerGrace); n > 0 {
		log.Warn("closing the store with requests still running", "requests", n)
	}
	log.Info("stopped")
	return runErr
}

// DefaultShutdownTimeout is the drain bound the README states: after it,
// upstream requests still open are cut and syncs cancelled.
const DefaultShutdownTimeout = 15 * time.Second

// handlerGrace bounds the wait for handlers still running after the cut:
// cut requests return at once, cancelled syncs record their run (at most
// 10 s, see syncer) and return. It is a safety net, not a second drain.
const handlerGrace = 15 * time.Second

// handlerCount counts running handlers. Not a WaitGroup: requests may
// still arrive on open connections while it is awaited.
type handlerCount struct{ n atomic.Int64 }

func (h *handlerCount) track(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		h.n.Add(1)
		defer h.n.Add(-1)
		next(ctx)
	}
}

// wait polls until no handler runs or d has passed; it returns how many
// still run.
func (h *handlerCount) wait(d time.Duration) int64 {
	deadline := time.Now().Add(d)
	for {
		n := h.n.Load()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reloadTargets are what a reload hands the new config to.
type reloadTargets struct {
	dirs   *Directories
	admin  *api.API
	fr     *frontend
	syncer *syncer.Syncer
	store  cache.Backend
}

// reload re-reads the config file on SIGHUP: directories, role mappings,
// schedules, headers, roles, local_users and the admin token file. A bad
// file (or an admin_token_file that is missing or empty) is rejected with
// every error logged and the running config kept. Listen addresses,
// data_dir and pprof need a restart.
func reload(ctx context.Context, cur *config.Config, to reloadTargets, log *slog.Logger) {
	next, err := config.Load(cur.Path)
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				log.Error("config reload rejected", "path", cur.Path, "error", e.Error())
			}
		} else {
			log.Error("config reload rejected", "path", cur.Path, "err", err)
		}
		return
	}
	// Before the directories: a token is rotated because the old one may
	// have leaked, and that must not wait on a directory failing to load.
	to.admin.Reload(next)
	to.syncer.SetRoles(next.Roles)
	if err := auth.SyncLocalUsers(ctx, to.store, next.LocalUsers); err != nil {
		// Hashes were checked by config.Load; this is the store failing.
		log.Error("config reload: local_users not applied", "err", err)
	}
	if err := to.dirs.Load(ctx, next); err != nil {
		log.Error("config reload: directories not applied", "err", err)
		return
	}
	if err := to.fr.apply(next); err != nil {
		log.Error("config reload: proxy settings not applied", "err", err)
		return
	}
	log.Info("config reloaded", "path", cur.Path, "directories", len(next.Directories))
}

// frontend is the HTTP front and the proxy it forwards through. The proxy
// fixes its identity header names, session cookie name and trusted proxies
// when built, so a reload that changes any of them builds a new proxy and
// front and swaps them in: otherwise the upstream would keep receiving the
// old header names (and a client could send the new ones unchecked), and a
// renamed session cookie would travel upstream.
type frontend struct {
	auth  *auth.Service
	dirs  *directory.Set
	admin fasthttp.RequestHandler
	log   *slog.Logger
	m     *metrics.Metrics
	work  context.Context // the parent of requests' store and directory calls

	cur atomic.Pointer[web.Server]

	mu      sync.Mutex // serialises apply and close
	opts    proxy.Options
	proxies []*proxy.Proxy // every proxy built; requests may still use retired ones
}

func (f *frontend) serve(ctx *fasthttp.RequestCtx) { f.cur.Load().Handler()(ctx) }

// apply makes cfg's front settings current.
func (f *frontend) apply(cfg *config.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	trusted, err := parsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	opts := proxy.Options{
		Upstream: cfg.Upstream, Headers: cfg.Headers, CookieName: cfg.Session.CookieName,
		TrustedProxies: trusted,
	}
	if cur := f.cur.Load(); cur != nil && sameProxyOptions(f.opts, opts) {
		cur.Reload(cfg)
		return nil
	}
	px, err := proxy.New(opts, f.log, f.m)
	if err != nil {
		return err
	}
	front, err := web.New(web.Deps{
		Config: cfg, Auth: f.auth, Proxy: px, Dirs: f.dirs, Log: f.log, Metrics: f.m, Admin: f.admin, Context: f.work,
	})
	if err != nil {
		px.Close()
		return err
	}
	// Reload also hands cfg's session and login settings to auth.
	front.Reload(cfg)
	f.opts = opts
	f.proxies = append(f.proxies, px)
	f.cur.Store(front)
	return nil
}

// close ends every proxy's tunnels and idle connections. Retired proxies
// are closed only here, after the server drained: a request that started
// before a reload finishes on the proxy it started with.
// cut closes every upstream connection of every proxy, busy ones too.
func (f *frontend) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, px := range f.proxies {
		px.Cut()
	}
}

func (f *frontend) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, px := range f.proxies {
		px.Close()
	}
}

func sameProxyOptions(a, b proxy.Options) bool {
	return a.Upstream == b.Upstream && a.Headers == b.Headers && a.CookieName == b.CookieName &&
		slices.Equal(a.TrustedProxies, b.TrustedProxies)
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// bodyReadTimeout bounds reading a request body once its headers are in:
// the whole-request bound ldapgate had before read_header_timeout, so a
// long upload streams as it did.
const bodyReadTimeout = 5 * time.Minute

func bodyTimeout(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	// Zero fields keep the server's settings; ReadTimeout must be set, or
	// the header deadline would still hold while the body streams.
	return fasthttp.RequestConfig{ReadTimeout: bodyReadTimeout}
}
