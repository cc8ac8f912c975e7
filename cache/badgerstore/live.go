package badgerstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// pLiveCookie keys the live-change cookie of a directory (SPEC §13):
// lv/<dir> → the opaque cookie of the last event applied, so a restart
// resumes the stream instead of re-reading the directory.
//
// No layout step (layout.go): it is a new key prefix that older binaries
// never read, and losing it only costs one re-read of the directory.
const pLiveCookie = "lv/"

// LiveCookie returns the stored live-change cookie of a directory, nil if
// none.
func (s *Store) LiveCookie(ctx context.Context, dirID uint64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key(pLiveCookie, dirID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err = it.ValueCopy(nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("live cookie of directory %d: %w", dirID, err)
	}
	return v, nil
}

// SetLiveCookie records the live-change cookie of a directory; nil or
// empty removes it.
func (s *Store) SetLiveCookie(ctx context.Context, dirID uint64, cookie []byte) error {
	err := s.Update(ctx, func(tx *Tx) error {
		k := key(pLiveCookie, dirID)
		if len(cookie) == 0 {
			return tx.del(k)
		}
		return tx.set(k, cookie)
	})
	if err != nil {
		return fmt.Errorf("set live cookie of directory %d: %w", dirID, err)
	}
	return nil
}
