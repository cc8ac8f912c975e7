package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/cache"
)

// Big transactions.
//
// Badger bounds one transaction (ErrTxnTooBig), but a migration must rename
// every user of a directory or none (SPEC §3), whatever its size. Update
// falls back to this mode when fn outgrows a badger transaction:
//
//  1. fn runs again against a read snapshot; its writes go to an in-memory
//     overlay, and all other writers wait (writeMu held exclusively, from
//     before the snapshot, so nothing fn read can change under it);
//  2. the overlay is written to a journal (j/ keys, invisible to readers)
//     in as many badger transactions as it takes;
//  3. one small transaction writes the marker jc: the commit point;
//  4. the journal is applied to the real keys in batches, then the marker
//     is deleted, then the journal.
//
// A crash before 3 leaves a journal without marker, which Open discards: no
// change. A crash after 3 leaves the marker, and Open re-applies the whole
// journal (sets and deletes of final values: repeatable) before anyone can
// write. Readers may see a partly applied journal for the duration of step
// 4; writers cannot, and their transactions that read old values conflict
// with the applied batches and are retried.

const (
	pJournal       = "j/"
	keyJournalMark = "jc"
)

type bigEntry struct {
	value     []byte
	expiresAt uint64
	deleted   bool
}

// overlay holds the writes of a big transaction, last write per key wins.
type overlay struct {
	m map[string]bigEntry
}

func (o *overlay) put(k []byte, e bigEntry) {
	e.value = append([]byte(nil), e.value...)
	o.m[string(k)] = e
}

// testHookBigCommit, when set (tests only), runs at each step of a big
// commit; an error stops the commit there as a crash would.
var testHookBigCommit func(step string) error

func bigHook(step string) error {
	if testHookBigCommit == nil {
		return nil
	}
	return testHookBigCommit(step)
}

func (s *Store) updateBig(ctx context.Context, fn func(tx *Tx) error, assigned map[uint64]bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.brokenErr(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store update: %w", err)
	}
	snap := s.db.NewTransaction(false)
	defer snap.Discard()
	var tx *Tx
	for reruns := 0; ; reruns++ {
		tx = &Tx{s: s, txn: snap, big: &overlay{m: map[string]bigEntry{}}, now: time.Now().UTC(), assigned: assigned}
		err := fn(tx)
		if err == nil {
			break
		}
		if !errors.Is(err, cache.ErrRerun) || reruns >= maxReruns {
			return err
		}
	}
	if err := tx.finish(); err != nil {
		return err
	}
	err := s.commitBig(ctx, tx.big)
	s.invalidate(tx.ids, tx.names)
	if err != nil {
		return fmt.Errorf("store update (%d keys): %w", len(tx.big.m), err)
	}
	s.log.Info("committed a transaction too big for one badger transaction", "keys", len(tx.big.m))
	return nil
}

// brokenErr is set once a committed big transaction could not be applied
// in process; only a restart (Open) may finish it.
func (s *Store) brokenErr() error {
	if p := s.broken.Load(); p != nil {
		return *p
	}
	return nil
}

func encodeJournal(k string, e bigEntry) []byte {
	b := make([]byte, 0, 1+10+10+len(k)+len(e.value))
	if e.deleted {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, e.expiresAt)
	b = appendString(b, k)
	return append(b, e.value...)
}

func decodeJournal(b []byte) (k []byte, e bigEntry, err error) {
	r := reader{s: string(b)}
	if len(r.s) == 0 {
		return nil, e, errShortRecord
	}
	e.deleted = r.s[0] == 1
	r.s = r.s[1:]
	e.expiresAt = r.uvarint()
	ks := r.string()
	if r.err != nil {
		return nil, e, r.err
	}
	return []byte(ks), bigEntry{value: []byte(r.s), expiresAt: e.expiresAt, deleted: e.deleted}, nil
}

func (s *Store) commitBig(ctx context.Context, o *overlay) error {
	// Steps 2 and 3 may be cancelled: nothing is visible yet.
	wb := s.db.NewWriteBatch()
	var n uint64
	for k, e := range o.m {
		n++
		if err := wb.Set(key(pJournal, n), encodeJournal(k, e)); err != nil {
			wb.Cancel()
			return fmt.Errorf("write journal: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := bigHook("journal"); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		s.discardJournal()
		return err
	}
	err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keyJournalMark), idBytes(n)) })
	if err != nil {
		s.discardJournal()
		return fmt.Errorf("commit journal: %w", err)
	}
	// Committed: from here on the journal is applied whatever ctx says; a
	// failure is left for Open to finish.
	err = bigHook("marked")
	if err == nil {
		err = s.applyJournal()
	}
	if err != nil {
		// Writing on would be unsafe: Open re-applies the journal, which
		// would overwrite anything written after this point.
		err = fmt.Errorf("apply journal (reopen the store to finish it): %w", err)
		s.broken.Store(&err)
		return err
	}
	return nil
}

// recoverJournal finishes or discards a big commit interrupted by a crash.
// Called by Open before the store is used.
func (s *Store) recoverJournal() error {
	var marked bool
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(keyJournalMark))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		marked = err == nil
		return err
	})
	if err != nil {
		return err
	}
	if marked {
		s.log.Warn("finishing a big transaction interrupted by a crash")
		return s.applyJournal()
	}
	return s.discardJournal()
}

// applyJournal applies every journal entry in batches that fit badger
// transactions, then removes the marker and the journal. Regular
// transactions (not a WriteBatch) so that writers which read the old
// values conflict and retry.
func (s *Store) applyJournal() error {
	start := []byte(pJournal)
	for {
		var (
			txn  = s.db.NewTransaction(true)
			last []byte
			done = true
		)
		err := s.db.View(func(rtx *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = []byte(pJournal)
			it := rtx.NewIterator(opts)
			defer it.Close()
			for it.Seek(start); it.Valid(); it.Next() {
				item := it.Item()
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				k, e, err := decodeJournal(v)
				if err != nil {
					return fmt.Errorf("journal entry %x: %w", item.Key(), err)
				}
				if e.deleted {
					err = txn.Delete(k)
				} else {
					err = txn.SetEntry(&badger.Entry{Key: k, Value: e.value, ExpiresAt: e.expiresAt})
				}
				if errors.Is(err, badger.ErrTxnTooBig) {
					done = false
					return nil
				}
				if err != nil {
					return err
				}
				last = item.KeyCopy(nil)
			}
			return nil
		})
		if err == nil {
			err = txn.Commit()
		}
		txn.Discard()
		if err != nil {
			return err
		}
		if err := bigHook("applied-batch"); err != nil {
			return err
		}
		if done {
			break
		}
		if last == nil {
			return errors.New("a journal entry does not fit an empty transaction")
		}
		start = append(last, 0)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(keyJournalMark)) }); err != nil {
		return err
	}
	return s.discardJournal()
}

// discardJournal deletes the journal entries (after the marker, if any).
func (s *Store) discardJournal() error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(pJournal)
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	wb := s.db.NewWriteBatch()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			return err
		}
	}
	return wb.Flush()
}
