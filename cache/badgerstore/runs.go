package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/cache"
)

// CreateRun stores a new run (r.ID is ignored) and returns it with its id.
// StartedAt is set if zero and Result defaults to RunRunning.
func (s *Store) CreateRun(ctx context.Context, r cache.Run) (cache.Run, error) {
	id, err := nextID(s.runSeq)
	if err != nil {
		return cache.Run{}, fmt.Errorf("create run: %w", err)
	}
	r.ID = id
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now().UTC()
	}
	if r.Result == "" {
		r.Result = cache.RunRunning
	}
	b, err := json.Marshal(r)
	if err != nil {
		return cache.Run{}, fmt.Errorf("create run: %w", err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.set(key(pRun, id), b); err != nil {
			return err
		}
		return tx.set(key(pRunDir, r.DirectoryID, id), nil)
	})
	if err != nil {
		return cache.Run{}, fmt.Errorf("create run: %w", err)
	}
	// History is bounded so an hourly schedule cannot grow the store
	// forever; failing to prune is not a reason to refuse a sync.
	if err := s.pruneRuns(ctx, r.DirectoryID, keepRuns); err != nil {
		s.log.Warn("pruning old sync runs failed", "directory_id", r.DirectoryID, "err", err)
	}
	return r, nil
}

// keepRuns is how many runs (with their audit lists) are kept per
// directory: about six weeks of hourly syncs.
const keepRuns = 1000

// pruneBatch bounds the keys deleted per transaction (a first sync's run
// can list 100k changes, far past one transaction).
const pruneBatch = 10_000

// pruneRuns deletes the runs of dirID older than the newest keep. A run's
// audit entries go first and its record last, so an interrupted prune
// leaves at worst a run with a truncated list, which the next prune removes.
func (s *Store) pruneRuns(ctx context.Context, dirID uint64, keep int) error {
	var old []uint64
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := key(pRunDir, dirID)
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.Reverse = true
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		n := 0
		for it.Seek(append(prefix, 0xff)); it.Valid(); it.Next() {
			if n++; n > keep {
				old = append(old, suffixID(it.Item().Key()))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range old {
		if err := s.deleteRun(ctx, dirID, id); err != nil {
			return fmt.Errorf("run %d: %w", id, err)
		}
	}
	return nil
}

func (s *Store) deleteRun(ctx context.Context, dirID, runID uint64) error {
	for {
		var keys [][]byte
		err := s.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = key(pAudit, runID)
			opts.PrefetchValues = false
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < pruneBatch; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		err = s.Update(ctx, func(tx *Tx) error {
			for _, k := range keys {
				if err := tx.del(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return s.Update(ctx, func(tx *Tx) error {
		for _, k := range [][]byte{key(pAuditSeq, runID), key(pRun, runID), key(pRunDir, dirID, runID)} {
			if err := tx.del(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// FinishRun stores the final state of a run created by CreateRun
// (FinishedAt set if zero). ErrNotFound.
func (s *Store) FinishRun(ctx context.Context, r cache.Run) error {
	if r.FinishedAt.IsZero() {
		r.FinishedAt = time.Now().UTC()
	}
	err := s.Update(ctx, func(tx *Tx) error {
		v, err := tx.get(key(pRun, r.ID))
		if err != nil {
			return err
		}
		var old cache.Run
		if err := json.Unmarshal(v, &old); err != nil {
			return err
		}
		if old.DirectoryID != r.DirectoryID {
			return fmt.Errorf("run belongs to directory %d, not %d", old.DirectoryID, r.DirectoryID)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return tx.set(key(pRun, r.ID), b)
	})
	if err != nil {
		return fmt.Errorf("finish run %d: %w", r.ID, err)
	}
	return nil
}

// Run returns one run. ErrNotFound.
func (s *Store) Run(ctx context.Context, runID uint64) (cache.Run, error) {
	if err := ctx.Err(); err != nil {
		return cache.Run{}, err
	}
	var r cache.Run
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key(pRun, runID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return cache.ErrNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return json.Unmarshal(v, &r) })
	})
	if err != nil {
		return cache.Run{}, fmt.Errorf("run %d: %w", runID, err)
	}
	return r, nil
}

// Runs returns the runs of directory dirID (0: of all directories), newest
// first, at most limit (0: all).
func (s *Store) Runs(ctx context.Context, dirID uint64, limit int) ([]cache.Run, error) {
	var out []cache.Run
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(pRun)
		if dirID != 0 {
			prefix = key(pRunDir, dirID)
		}
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.Reverse = true
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		// A reverse prefix scan must start past the last key of the prefix.
		for it.Seek(append(append([]byte{}, prefix...), 0xff)); it.Valid(); it.Next() {
			if limit > 0 && len(out) >= limit {
				break
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			var r cache.Run
			if dirID == 0 {
				if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
					return err
				}
			} else {
				ri, err := txn.Get(key(pRun, suffixID(item.Key())))
				if err != nil {
					return fmt.Errorf("run index: %w", err)
				}
				if err := ri.Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
					return err
				}
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("runs of directory %d: %w", dirID, err)
	}
	return out, nil
}

// RunChanges returns the audit entries of a run in Seq order. ErrNotFound
// if the run does not exist.
func (s *Store) RunChanges(ctx context.Context, runID uint64) ([]cache.AuditEntry, error) {
	out := []cache.AuditEntry{}
	err := s.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(key(pRun, runID)); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return cache.ErrNotFound
			}
			return err
		}
		return iterate(ctx, txn, key(pAudit, runID), func(_, v []byte) error {
			var err error
			out, err = cache.DecodeAudit(out, v)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("changes of run %d: %w", runID, err)
	}
	return out, nil
}
