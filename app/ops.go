package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ldapgate/ldapgate/api"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/listener"
	"github.com/ldapgate/ldapgate/metrics"
)

// opsServer is the metrics listener: /metrics, /healthz, /readyz. It is a
// plain net/http server on its own address so scraping and probes never
// compete with user traffic and can stay off the public network.
type opsServer struct {
	srv   *http.Server
	ln    *listener.Listener
	store cache.Backend
	dirs  *directory.Set
	log   *slog.Logger
	level *slog.LevelVar

	mu     sync.Mutex
	probes map[uint64]probe // directory id → last reachability probe
}

type probe struct {
	at  time.Time
	err error
}

const (
	// probeEvery keeps readiness probes from hammering the directories.
	probeEvery = 30 * time.Second
	// probeTimeout bounds one directory's probe, whatever its own LDAP
	// timeouts: a hung directory must not hold /readyz past what probe
	// clients wait (Kubernetes: 1 s by default; probes that overrun count
	// as failures, not as hangs).
	probeTimeout = 2 * time.Second
	// freshSync: a directory that cannot be reached right now still counts
	// as ready if it synced successfully this recently.
	freshSync = 25 * time.Hour
)

func newOpsServer(cfg *config.Config, store cache.Backend, dirs *directory.Set, m *metrics.Metrics, log *slog.Logger,
	level *slog.LevelVar,
) (*opsServer, error) {
	raw, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return nil, err
	}
	ln := listener.Wrap(raw, "metrics_listen", listener.Limits{
		MaxConns: cfg.Server.MaxConns, MaxConnsPerIP: cfg.Server.MaxConnsPerIP,
	}, log, m)
	o := &opsServer{ln: ln, store: store, dirs: dirs, log: log, level: level, probes: map[uint64]probe{}}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", o.readyz)
	mux.HandleFunc("POST "+api.LogLevelPath, o.logLevel)
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	o.srv = &http.Server{
		Handler: mux, ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(), IdleTimeout: cfg.Server.IdleTimeout.D(),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return o, nil
}

func (o *opsServer) addr() string { return o.ln.Addr().String() }

func (o *opsServer) serve() error {
	if err := o.srv.Serve(o.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (o *opsServer) shutdown(ctx context.Context) { _ = o.srv.Shutdown(ctx) }

// logLevel is the platform guide's diagnostics call (`curl -H 'internal-auth:
// on' -d debug .../auth/v4/internal/settings/log/level`), served here only:
// metrics_listen is never public, and on listen a loopback peer is every
// client of a reverse proxy on the same host. The header and a loopback peer
// are still required, so that a metrics_listen left reachable by mistake
// gives a scraper no say over the log.
func (o *opsServer) logLevel(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !peer.Addr().Unmap().IsLoopback() || !strings.EqualFold(r.Header.Get("internal-auth"), "on") {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","msg":"internal-auth: on from the same host required"}}`))
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 64))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	l, err := api.ParseLevel(raw)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"code":"bad_level","msg":"level must be debug, info, warn or error"}}`))
		return
	}
	o.level.Set(l)
	o.log.Info("log level changed", "level", l.String(), "via", "metrics_listen")
	_ = json.NewEncoder(w).Encode(map[string]string{"level": strings.ToLower(l.String())})
}

type dirReadiness struct {
	ID          uint64 `json:"id"`
	Name        string `json:"name"`
	Ready       bool   `json:"ready"`
	Reason      string `json:"reason"` // reachable, last_sync_fresh, unreachable
	Error       string `json:"error,omitempty"`
	LastSuccess string `json:"last_success,omitempty"`
}

// readyz: ready when the store answers and every directory is either
// reachable now or synced successfully within freshSync. The body says
// which, per directory.
func (o *opsServer) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	body := struct {
		Ready       bool           `json:"ready"`
		Store       string         `json:"store"`
		Directories []dirReadiness `json:"directories"`
	}{Ready: true, Store: "ok", Directories: []dirReadiness{}}
	if _, err := o.store.UserByID(ctx, 0); err != nil && !errors.Is(err, cache.ErrNotFound) {
		body.Ready, body.Store = false, err.Error()
	}
	// Directories are probed at once, each under its own bound: probed one
	// after the other under one deadline, a hung directory used up the
	// deadline and the next, healthy one was reported (and cached as)
	// unreachable.
	entries := o.dirs.List()
	probeErrs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() { probeErrs[i] = o.probe(r.Context(), e) })
	}
	wg.Wait()
	for i, e := range entries {
		d := dirReadiness{ID: e.Config.ID, Name: e.Config.Name}
		if err := probeErrs[i]; err == nil {
			d.Ready, d.Reason = true, "reachable"
		} else {
			d.Error = err.Error()
			d.Reason = "unreachable"
			if runs, rerr := o.store.Runs(ctx, e.Config.ID, 50); rerr == nil {
				for _, run := range runs {
					if run.Result == cache.RunSuccess {
						d.LastSuccess = run.FinishedAt.Format(time.RFC3339)
						if time.Since(run.FinishedAt) < freshSync {
							d.Ready, d.Reason = true, "last_sync_fresh"
						}
						break
					}
				}
			}
		}
		body.Ready = body.Ready && d.Ready
		body.Directories = append(body.Directories, d)
	}
	w.Header().Set("Content-Type", "application/json")
	if !body.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (o *opsServer) probe(ctx context.Context, e *directory.Entry) error {
	o.mu.Lock()
	p, ok := o.probes[e.Config.ID]
	o.mu.Unlock()
	if ok && time.Since(p.at) < probeEvery {
		return p.err
	}
	// The result is cached for every caller, so it must not depend on this
	// caller: the probe outlives a client that hangs up, within its bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	defer cancel()
	// A login-name search for nobody is the cheapest round trip that proves
	// the service account can bind and search.
	_, err := e.Client.FindUser(ctx, "ldapgate-readiness-probe")
	if errors.Is(err, directory.ErrUserNotFound) {
		err = nil
	}
	o.mu.Lock()
	o.probes[e.Config.ID] = probe{at: time.Now(), err: err}
	o.mu.Unlock()
	return err
}
