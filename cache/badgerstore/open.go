// Package badgerstore is ldapgate's embedded default store (cache.Backend):
// badger v4 under data_dir holding users, API-created directories, sync
// runs with their audit lists and sessions, with golang-lru caches in front
// of the hot reads (user by id, by name). It is the only package that
// touches badger.
package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/metrics"
)

// Sizes chosen for a sidecar whose whole process must stay under 300 MiB
// while a 100k-user sync runs (issue 3). Badger's defaults (64 MiB memtables
// ×5, 256 MiB block cache) alone would exceed that. Every memtable is a Go
// heap arena of its size plus ~30% (the transaction headroom below), and
// the GC lets the heap grow to twice what is live, arenas included.
// Measured with BenchmarkFirstSync100k (heap profiles, gctrace): the peak
// comes during the apply, when both arenas, a flush's table buffers (about
// a memtable's size) and the plan's records are live, and the allocations
// of the running batches push the GC's goal further.
//
//   - 12 MiB memtables: arenas of ~16 MiB. Alternating in one session
//     (after the plan and the apply had been made leaner), peak RSS was
//     287-291 MiB with 16 MiB memtables, 235-237 with 12 and 211-229 with
//     8, at about the same sync time (1.6-1.9x ldapsearch for all three).
//   - NumMemtables stays 2 (up to two waiting for their flush): with 1, a
//     writer waits whenever a memtable fills before the previous flush is
//     done, which on a loaded machine stalled an apply for seconds.
//   - Compaction of level 0 waits for 8 tables (stall at 16): a first sync
//     of 100k users (about 6 tables) runs without compactions competing
//     for the two cores (BenchmarkApply100k with 16 MiB memtables: 1.06-1.24
//     s with 2 tables, 0.88-0.93 s with 6), and without the rewritten
//     tables' mmapped pages in RSS while it runs.
//
// The memtable size also bounds one badger transaction (15% of it: ~1.8
// MiB or ~20,000 keys, i.e. ~3,000 new users with their audit entries or
// ~3,000 renames); Update commits anything bigger through its journal
// (bigtx.go), which costs a second write of every key, so the common
// batches (the syncer's 1000 changes, ~0.6 MiB) stay well below it.
//
// No compression: the store is small (100k users ≈ 40 MiB of tables), and
// without it badger needs no block cache and no compression goroutines, and
// reads blocks straight from the mmapped tables. Index cache 0 keeps the
// (small) table indexes in memory instead of in a second ristretto cache.
//
// Values stay inside the LSM tree (threshold 1 MiB; no record comes near),
// so the value log is only a write-ahead log and needs no GC goroutine.
var memTableSize int64 = 12 << 20 // a var so tests can make big transactions cheap

const (
	numMemtables     = 2
	numL0Tables      = 8
	numL0TablesStall = 16
	vlogFileSize     = 64 << 20

	// userCacheSize bounds the hot-user LRU (a User is well under 1 KiB).
	userCacheSize = 8192
	// idLease is how many ids one Sequence lease reserves. A crash loses at
	// most that many numbers, which is allowed: ids must never be reused,
	// not be dense.
	idLease = 256
	// userIDLease is larger: each new lease is a synchronous badger commit
	// made from inside the caller's transaction, and a first sync of 100k
	// users took 391 of them with 256. A crash skips at most this many
	// user ids (never reuses one); a clean Close returns the unused ones.
	userIDLease = 16384
)

// Store is ldapgate's persistent state. All methods are safe for concurrent
// use.
type Store struct {
	db  *badger.DB
	log *slog.Logger

	userSeq, dirSeq, runSeq *badger.Sequence

	// writeMu is held shared by every commit and exclusively by a big
	// transaction (bigtx.go) for its whole run.
	writeMu sync.RWMutex
	broken  atomic.Pointer[error]

	// byID and byName front the user records. fillMu and gen keep them
	// coherent with writes: see fillUser.
	byID   *lru.Cache[uint64, *account.User]
	byName *lru.Cache[string, uint64]
	fillMu sync.Mutex
	gen    atomic.Uint64

	hits, misses prometheus.Counter

	// auditChunkSize is the size the last full audit chunk reached: the
	// capacity new chunks start with.
	auditChunkSize atomic.Int64

	// trustMu and trustGen: turns of trusted name writes (names.go).
	trustMu  sync.Mutex
	trustGen atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store under dir. A directory held by
// another process (or another Store in this one) gives ErrLocked. m may be
// nil (tests).
func Open(dir string, log *slog.Logger, m *metrics.Metrics) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "store")
	opts := badger.DefaultOptions(dir).
		// WithLoggingLevel first: it replaces the logger with badger's own,
		// so our adapter must be installed after it.
		WithLoggingLevel(badger.WARNING).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(memTableSize).
		WithValueThreshold(min(1<<20, memTableSize*15/100)).
		WithNumMemtables(numMemtables).
		WithNumLevelZeroTables(numL0Tables).
		WithNumLevelZeroTablesStall(numL0TablesStall).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithValueLogFileSize(vlogFileSize).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithCompression(options.None).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		// Badger flattens the flock error into a string (its y.Wrapf keeps no
		// %w outside debug builds), so the message is all there is to match.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("open store %s: %w (is another ldapgate running with the same data_dir?): %v", dir, cache.ErrLocked, err)
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{db: db, log: log}
	// The layout is checked before anything is written: a store from a
	// newer ldapgate is left exactly as it was (layout.go).
	layout, err := s.readLayout()
	if err == nil && layout > layoutCurrent() {
		err = newerLayoutErr(layout)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	if err := s.recoverJournal(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: recover interrupted transaction: %w", dir, err)
	}
	if layout == 0 {
		if err := s.stampLayout(); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	for _, sq := range []struct {
		p     **badger.Sequence
		key   string
		lease uint64
	}{{&s.userSeq, keySeqUser, userIDLease}, {&s.dirSeq, keySeqDir, idLease}, {&s.runSeq, keySeqRun, idLease}} {
		if *sq.p, err = db.GetSequence([]byte(sq.key), sq.lease); err != nil {
			s.releaseSeqs()
			db.Close()
			return nil, fmt.Errorf("open store %s: id sequence %s: %w", dir, sq.key, err)
		}
	}
	s.byID, _ = lru.New[uint64, *account.User](userCacheSize)
	s.byName, _ = lru.New[string, uint64](userCacheSize)
	if m != nil {
		s.hits = m.CacheRequests.WithLabelValues("user", "hit")
		s.misses = m.CacheRequests.WithLabelValues("user", "miss")
	}
	if layout > 0 && layout < layoutCurrent() {
		if err := s.migrateLayout(context.Background(), layout); err != nil {
			s.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	return s, nil
}

func (s *Store) releaseSeqs() error {
	var errs []error
	for _, sq := range []*badger.Sequence{s.userSeq, s.dirSeq, s.runSeq} {
		if sq != nil {
			errs = append(errs, sq.Release())
		}
	}
	return errors.Join(errs...)
}

// Close releases the unused id leases and closes badger. Safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Let a big transaction in flight finish its apply first.
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
		seqErr := s.releaseSeqs()
		dbErr := s.db.Close()
		if err := errors.Join(seqErr, dbErr); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}

// nextID draws from seq, skipping 0: 0 means "not assigned yet" everywhere
// (User.ID, Run.ID, Directory.ID, UserFilter.DirectoryID).
func nextID(seq *badger.Sequence) (uint64, error) {
	for {
		id, err := seq.Next()
		if err != nil {
			return 0, fmt.Errorf("next id: %w", err)
		}
		if id != 0 {
			return id, nil
		}
	}
}

// badgerLogger routes badger's own messages through slog. Badger is chatty
// at info (every compaction, every flush); only warnings and errors are
// worth an operator's attention.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "source", "badger")
}

func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "source", "badger")
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

var _ badger.Logger = badgerLogger{}
