package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/metrics"
	"github.com/ldapgate/ldapgate/syncer"
)

// Sizes of the in-memory caches.
const (
	sessionCacheSize = 65536
	basicCacheSize   = 8192
	// basicTTL bounds how long a Basic-auth success is trusted without a
	// new bind: a password changed or an account disabled in the
	// directory takes effect within it (a store block at once).
	basicTTL = 60 * time.Second
	// gaugeEvery: how often ldapgate_sessions_active is recounted.
	gaugeEvery = 30 * time.Second
)

// touchEvery: a session's LastSeen is written back at most this often, so
// a busy client costs one store write a minute, not one a request. A var
// so tests can shorten it.
var touchEvery = time.Minute

// Deps are the Service's collaborators.
type Deps struct {
	Config  *config.Config
	Store   cache.Backend
	Dirs    *directory.Set
	Syncer  *syncer.Syncer
	Log     *slog.Logger
	Metrics *metrics.Metrics
}

// oneSyncer is the syncer's on-the-spot sync of one entry (SPEC §5).
type oneSyncer interface {
	SyncOne(ctx context.Context, dirID uint64, u directory.User) (account.User, error)
}

// settings are the reloadable parts of the config (SIGHUP).
type settings struct {
	ttl                time.Duration
	idle               time.Duration
	maxFailures        int
	maxFailuresPerAddr int
	maxFailuresPerUser int
	window             time.Duration
	maxSessionsPerUser int
}

func settingsFrom(cfg *config.Config) *settings {
	st := &settings{
		ttl:                cfg.Session.TTL.D(),
		idle:               cfg.Session.IdleTimeout.D(),
		maxFailures:        cfg.Login.MaxFailures,
		maxFailuresPerAddr: cfg.Login.MaxFailuresPerAddress,
		maxFailuresPerUser: cfg.Login.MaxFailuresPerUser,
		window:             cfg.Login.Window.D(),
		maxSessionsPerUser: cfg.Session.MaxPerUser,
	}
	if st.ttl <= 0 {
		st.ttl = config.DefaultSessionTTL
	}
	if st.maxFailures <= 0 {
		st.maxFailures = config.DefaultMaxFailures
	}
	if st.maxFailuresPerAddr <= 0 {
		st.maxFailuresPerAddr = config.DefaultMaxFailuresPerAddress
	}
	if st.maxFailuresPerUser <= 0 {
		st.maxFailuresPerUser = config.DefaultMaxFailuresPerUser
	}
	if st.window <= 0 {
		st.window = config.DefaultLoginWindow
	}
	if st.maxSessionsPerUser <= 0 {
		st.maxSessionsPerUser = config.DefaultMaxSessionsPerUser
	}
	return st
}

// Service logs users in and checks their sessions. Safe for concurrent use.
type Service struct {
	store  cache.Backend
	dirs   *directory.Set
	syncer oneSyncer
	log    *slog.Logger
	m      *metrics.Metrics

	st atomic.Pointer[settings]

	sessions *lru.Cache[[32]byte, *sessEntry]
	limits   *limiter

	credSeed   maphash.Seed
	basicKey   []byte
	basic      *lru.Cache[[32]byte, *basicEntry]
	basicGroup singleflight.Group

	// Counters resolved once: WithLabelValues on the hot path would cost
	// a lookup and an allocation per request.
	sessHit, sessMiss, basicHit, basicMiss prometheus.Counter

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// New builds the Service and starts its one background task (recounting
// ldapgate_sessions_active), which Close stops.
func New(d Deps) (*Service, error) {
	if d.Config == nil || d.Store == nil || d.Dirs == nil {
		return nil, errors.New("auth: config, store and directories are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	s := &Service{
		store:    d.Store,
		dirs:     d.Dirs,
		log:      d.Log.With("component", "auth"),
		m:        d.Metrics,
		limits:   newLimiter(),
		credSeed: maphash.MakeSeed(),
		stop:     make(chan struct{}),
	}
	if d.Syncer != nil {
		s.syncer = d.Syncer
	}
	s.st.Store(settingsFrom(d.Config))
	var err error
	if s.sessions, err = lru.New[[32]byte, *sessEntry](sessionCacheSize); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if s.basic, err = lru.New[[32]byte, *basicEntry](basicCacheSize); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s.basicKey = make([]byte, 32)
	if _, err := rand.Read(s.basicKey); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s.sessHit = s.m.CacheRequests.WithLabelValues("session", "hit")
	s.sessMiss = s.m.CacheRequests.WithLabelValues("session", "miss")
	s.basicHit = s.m.CacheRequests.WithLabelValues("basic_auth", "hit")
	s.basicMiss = s.m.CacheRequests.WithLabelValues("basic_auth", "miss")

	if w, ok := d.Store.(cache.Watcher); ok {
		// Another replica's logout, cap or "end sessions" reaches this
		// LRU through the store's change feed (SPEC §12).
		w.Watch(s.storeChanged)
	}
	s.wg.Go(s.countSessions)
	return s, nil
}

// storeChanged drops the cached sessions a change of the shared store ends.
// A user's block, deletion or password change needs nothing here: every
// check reads the user, and the store drops its cached record itself.
func (s *Service) storeChanged(c cache.Change) {
	switch {
	case c.All:
		s.sessions.Purge()
		s.basic.Purge()
	case c.UserID != 0:
		s.forgetUser(c.UserID)
	case c.Session != [32]byte{}:
		s.sessions.Remove(c.Session)
	}
}

// Reload applies a new config's session lifetimes and login limits.
// In-flight requests see either the old or the new settings.
func (s *Service) Reload(cfg *config.Config) { s.st.Store(settingsFrom(cfg)) }

// Close stops the background task. Safe to call more than once.
func (s *Service) Close() {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
}

func (s *Service) countSessions() {
	t := time.NewTicker(gaugeEvery)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if n, err := s.store.CountSessions(ctx); err == nil {
			s.m.SessionsActive.Set(float64(n))
		} else if !errors.Is(err, context.Canceled) {
			s.log.Warn("counting sessions", "err", err)
		}
		cancel()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}
