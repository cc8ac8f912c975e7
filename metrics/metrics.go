// Package metrics defines every Prometheus metric ldapgate exports (SPEC
// §10), in one place so label sets stay bounded: directory names, results,
// actions, cache names and a fixed set of routes. Never a username or a raw
// path.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "ldapgate"

// Metrics holds the collectors. Create one per process with New; tests use
// their own registry.
type Metrics struct {
	Registry *prometheus.Registry

	HTTPRequests        *prometheus.CounterVec   // route, code
	HTTPRequestDuration *prometheus.HistogramVec // route
	UpstreamDuration    prometheus.Histogram
	Logins              *prometheus.CounterVec   // directory, result
	LDAPOpDuration      *prometheus.HistogramVec // directory, op
	SyncRuns            *prometheus.CounterVec   // directory, result
	SyncDuration        *prometheus.HistogramVec // directory
	SyncPhaseDuration   *prometheus.HistogramVec // directory, phase (read, plan, apply)
	SyncLastSuccess     *prometheus.GaugeVec     // directory
	SyncChanges         *prometheus.CounterVec   // directory, action
	LiveEvents          *prometheus.CounterVec   // directory, action
	LiveConnected       *prometheus.GaugeVec     // directory
	Users               *prometheus.GaugeVec     // directory, state
	SessionsActive      prometheus.Gauge
	CacheRequests       *prometheus.CounterVec // cache, result

	ListenerAcceptErrors *prometheus.CounterVec // listener, reason
	ListenerLimited      *prometheus.CounterVec // listener, limit
	ListenerConnections  *prometheus.GaugeVec   // listener
}

// New creates and registers every metric, with the Go and process collectors.
func New() *Metrics { return NewReplica("") }

// NewReplica is New for a process named replica: the sync metrics carry
// it as their replica label (SPEC §12: which of several replicas synced).
func NewReplica(replica string) *Metrics {
	var syncLabels prometheus.Labels
	if replica != "" {
		syncLabels = prometheus.Labels{"replica": replica}
	}
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests served, by route (a fixed set) and status code.",
		}, []string{"route", "code"}),
		HTTPRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		UpstreamDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_request_duration_seconds",
			Help:    "Time the upstream took to answer proxied requests (to response headers).",
			Buckets: prometheus.DefBuckets,
		}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "logins_total",
			Help: "Login attempts by directory (or \"local\") and result.",
		}, []string{"directory", "result"}),
		LDAPOpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "ldap_operation_duration_seconds",
			Help:    "Duration of LDAP operations by directory and operation (bind, search, read_users, read_groups).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"directory", "op"}),
		SyncRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_runs_total", ConstLabels: syncLabels,
			Help: "Sync runs by directory and result (success, failed, refused, dry_run).",
		}, []string{"directory", "result"}),
		SyncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "sync_duration_seconds", ConstLabels: syncLabels,
			Help:    "Duration of sync runs by directory.",
			Buckets: []float64{.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"directory"}),
		SyncPhaseDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "sync_phase_duration_seconds", ConstLabels: syncLabels,
			Help: "Duration of the phases of sync runs that reached them, by directory and phase: " +
				"read (the directory), plan, apply (the store).",
			Buckets: []float64{.01, .05, .1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"directory", "phase"}),
		SyncLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "sync_last_success_timestamp_seconds", ConstLabels: syncLabels,
			Help: "Unix time of the last successful sync, by directory.",
		}, []string{"directory"}),
		SyncChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_changes_total", ConstLabels: syncLabels,
			Help: "Applied sync changes by directory and action.",
		}, []string{"directory", "action"}),
		LiveEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "live_events_total",
			Help: "Live directory changes handled, by directory and action (the change applied, or skip, paused, resync).",
		}, []string{"directory", "action"}),
		LiveConnected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "live_connected",
			Help: "1 while the directory's live-change stream is connected, else 0.",
		}, []string{"directory"}),
		Users: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "users",
			Help: "Users in the store by directory (\"local\" for local users) and state.",
		}, []string{"directory", "state"}),
		SessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "sessions_active",
			Help: "Sessions currently valid.",
		}),
		CacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "cache_requests_total",
			Help: "In-memory cache look-ups by cache (user, session, basic_auth) and result (hit, miss).",
		}, []string{"cache", "result"}),
		ListenerAcceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "listener_accept_errors_total",
			Help: "Failed accepts by listener (listen, metrics_listen) and reason (fd_limit: out of file " +
				"descriptors; aborted; other). The listener retries with back-off; clients wait meanwhile.",
		}, []string{"listener", "reason"}),
		ListenerLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "listener_limited_total",
			Help: "Connections held back by a limit, by listener and limit: max_conns (the accept waited " +
				"for a connection to close), max_conns_per_ip (the connection was closed at once).",
		}, []string{"listener", "limit"}),
		ListenerConnections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "listener_connections",
			Help: "Open client connections by listener.",
		}, []string{"listener"}),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.HTTPRequests, m.HTTPRequestDuration, m.UpstreamDuration, m.Logins,
		m.LDAPOpDuration, m.SyncRuns, m.SyncDuration, m.SyncPhaseDuration, m.SyncLastSuccess,
		m.SyncChanges, m.LiveEvents, m.LiveConnected, m.Users, m.SessionsActive, m.CacheRequests,
		m.ListenerAcceptErrors, m.ListenerLimited, m.ListenerConnections,
	)
	return m
}
