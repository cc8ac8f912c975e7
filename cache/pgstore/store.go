// Package pgstore is ldapgate's PostgreSQL store (SPEC §12): several
// replicas share one database for users, sessions, directories, runs and
// audit. It keeps the contract of cache.Backend with the same transaction
// rules as badger: an Update is one SERIALIZABLE transaction, rerun when
// PostgreSQL reports a serialization failure (badger's conflict), and the
// name and (directory, uuid) rules are unique constraints.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/metrics"
)

//go:embed schema/*.sql
var schemaFS embed.FS

// Options of Open.
type Options struct {
	// MaxConns bounds the pool (0: pgx's default).
	MaxConns int
	Log      *slog.Logger
	// Replica names this process (logs, the sync lock's holder).
	Replica string
	// Metrics, when set, counts the user cache's hits and misses
	// (ldapgate_cache_requests_total{cache="user"}), as on badger.
	Metrics *metrics.Metrics
}

// Store is a cache.Backend on PostgreSQL.
type Store struct {
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig
	log     *slog.Logger
	replica string

	// users caches user records by id (watch.go); gen counts the changes
	// heard, heard is when the change feed last answered (unix ns).
	users        *lru.Cache[uint64, account.User]
	hits, misses prometheus.Counter // nil without metrics
	gen          atomic.Uint64
	// createsHint: how many users the last committed transaction created
	// (the first id block of the next one).
	createsHint atomic.Int64
	heard       atomic.Int64
	watchState
}

var _ cache.Backend = (*Store)(nil)

// ErrNewerSchema: the database was migrated by a newer ldapgate.
var ErrNewerSchema = cache.ErrNewerLayout

// Open connects to dsn and creates or migrates the schema.
func Open(ctx context.Context, dsn string, opt Options) (*Store, error) {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors can quote the DSN, password included.
		return nil, errors.New("postgres: the dsn does not parse")
	}
	if opt.MaxConns > 0 {
		cfg.MaxConns = int32(opt.MaxConns)
	}
	// A server that does not answer is unavailable, not a hung request.
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	users, err := lru.New[uint64, account.User](userCacheSize)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, connCfg: cfg.ConnConfig.Copy(), log: opt.Log, replica: opt.Replica, users: users}
	s.stop = make(chan struct{})
	if opt.Metrics != nil {
		s.hits = opt.Metrics.CacheRequests.WithLabelValues("user", "hit")
		s.misses = opt.Metrics.CacheRequests.WithLabelValues("user", "miss")
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, unavailable(err)
	}
	ready := make(chan struct{})
	s.wg.Go(func() { s.listen(ready) })
	select {
	case <-ready:
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("postgres: change feed: %w", unavailable(ctx.Err()))
	}
	return s, nil
}

// Pool is the connection pool (tests, and the replica machinery).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.pool.Close()
	})
	return nil
}

// schemaLock is the advisory lock key that serialises schema migrations of
// replicas starting together.
const schemaLock = 0x6c64_6170_6761_7465 // "ldapgate"

// migrations are the embedded schema steps, in order: file N_*.sql takes
// the schema from version N-1 to N.
func migrations() ([]string, error) {
	names, err := fs.Glob(schemaFS, "schema/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]string, 0, len(names))
	for i, n := range names {
		v, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(n, "schema/"), "_", 2)[0])
		if err != nil || v != i+1 {
			return nil, fmt.Errorf("schema step %s out of sequence", n)
		}
		b, err := schemaFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return out, nil
}

// SchemaVersion is the schema this binary writes.
func SchemaVersion() int {
	m, _ := migrations()
	return len(m)
}

// migrate brings the schema to SchemaVersion under an advisory lock, each
// step in one transaction with its version bump; a newer schema refuses.
func (s *Store) migrate(ctx context.Context) error {
	steps, err := migrations()
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit: a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
		return fmt.Errorf("postgres: schema lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS ldapgate_schema (version int NOT NULL)`); err != nil {
		return fmt.Errorf("postgres: schema table: %w", err)
	}
	v := 0
	err = tx.QueryRow(ctx, `SELECT version FROM ldapgate_schema`).Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if _, err := tx.Exec(ctx, `INSERT INTO ldapgate_schema (version) VALUES (0)`); err != nil {
			return fmt.Errorf("postgres: schema version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("postgres: schema version: %w", err)
	}
	if v > len(steps) {
		return fmt.Errorf("%w (schema %d); this binary knows up to schema %d: run the newer ldapgate",
			ErrNewerSchema, v, len(steps))
	}
	for i := v; i < len(steps); i++ {
		if _, err := tx.Exec(ctx, steps[i]); err != nil {
			return fmt.Errorf("postgres: schema step %d: %w", i+1, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE ldapgate_schema SET version = $1`, i+1); err != nil {
			return fmt.Errorf("postgres: schema version: %w", err)
		}
		s.log.Info("store schema migrated", "version", i+1)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: schema: %w", err)
	}
	return nil
}

// retryable reports whether err is PostgreSQL's way of saying "another
// transaction got there first; run again": a serialization failure, a
// deadlock, or a unique violation met by a write whose own check passed
// (the other writer committed after this snapshot was taken).
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "40001", "40P01", "23505":
		return true
	}
	return false
}

// Bounds of one Update's reruns: conflicts with other writers, and
// ErrRerun (a sync's batch drops at most one change per rerun).
const (
	maxConflicts = 1000
	maxReruns    = 100_000
)

// SyncBatch: a sync's batches are 5,000 changes on PostgreSQL (badger's
// 1,000 keep its transactions small). Every transaction costs a few
// round trips and a commit on top of its COPYs: 100,000 new users took
// 1.1-1.2 s to apply in batches of 1,000 and 0.9 s in batches of 5,000;
// 10,000 and 25,000 gained nothing more (BENCHMARKS.md, "Several
// replicas").
func (s *Store) SyncBatch() int { return 5000 }

// Update runs fn in one SERIALIZABLE transaction; see cache.Backend.
func (s *Store) Update(ctx context.Context, fn func(tx cache.Txn) error) error {
	assigned := map[uint64]bool{}
	conflicts, reruns := 0, 0
	deferCreates := true
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("store update: %w", err)
		}
		err := s.attempt(ctx, assigned, deferCreates, fn)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errDeferredConflict) && conflicts < maxConflicts:
			deferCreates = false
			conflicts++
		case errors.Is(err, cache.ErrRerun) || retryable(err):
			if retryable(err) && conflicts < maxConflicts {
				conflicts++
				continue
			}
			if !retryable(err) && reruns < maxReruns {
				reruns++
				continue
			}
			return err
		default:
			return unavailable(err)
		}
	}
}

func (s *Store) attempt(ctx context.Context, assigned map[uint64]bool, deferCreates bool, fn func(tx cache.Txn) error) error {
	ptx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return fmt.Errorf("store update: %w", err)
	}
	defer ptx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit: a no-op
	tx := &Tx{ctx: ctx, s: s, tx: ptx, now: now(), assigned: assigned, deferCreates: deferCreates}
	// Before the rollback (defers run last first): a COPY still running
	// holds the connection.
	defer tx.flushPending() //nolint:errcheck // the attempt's answer is decided below
	if err := fn(tx); err != nil {
		if tx.failed != nil {
			// fn saw a failed statement (maybe wrapped as something
			// else); the transaction is void: its cause decides.
			return tx.failed
		}
		return err
	}
	if tx.failed != nil {
		return tx.failed
	}
	if err := tx.flushAudit(); err != nil {
		return err
	}
	if err := tx.notify(); err != nil {
		return err
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("store commit: %w", err)
	}
	s.createsHint.Store(tx.creates)
	if len(tx.notes) > 0 {
		// This replica's own caches need not wait for the feed.
		s.apply(strings.Join(tx.notes, ","))
	}
	return nil
}

// now is the store's clock: PostgreSQL keeps microseconds, so times are
// cut to them before they are handed back, and a written record reads
// back equal.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func pgTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// NamesToken: PostgreSQL's unique constraints make PutUser's checks one
// statement already, so there is no trusted mode.
func (s *Store) NamesToken(context.Context) (cache.NamesToken, error) { return cache.NamesToken{}, nil }

// TrustNames: never (see NamesToken).
func (s *Store) TrustNames() (func(), bool) { return nil, false }

// view runs fn in a read-only REPEATABLE READ transaction (one snapshot).
func (s *Store) view(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	if err := fn(tx); err != nil {
		return unavailable(err)
	}
	return unavailable(tx.Commit(ctx))
}
