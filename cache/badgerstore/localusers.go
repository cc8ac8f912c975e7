package badgerstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/ldapgate/ldapgate/cache"
)

// keyConfigLocalUsers holds the names the config file gave last time
// (cache.PruneLocalUsers).
const keyConfigLocalUsers = "lc"

// PruneConfigLocalUsers: see cache.PruneLocalUsers.
func (s *Store) PruneConfigLocalUsers(ctx context.Context, names []string) ([]string, error) {
	var deleted []string
	err := s.Update(ctx, func(tx *Tx) error {
		var stored []byte
		err := tx.lookup([]byte(keyConfigLocalUsers), func(v []byte) error {
			stored = append([]byte(nil), v...)
			return nil
		})
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return fmt.Errorf("config local users: %w", err)
		}
		var record []byte
		if deleted, record, err = cache.PruneLocalUsers(tx, stored, names); err != nil {
			return err
		}
		return tx.set([]byte(keyConfigLocalUsers), record)
	})
	if err != nil {
		return nil, fmt.Errorf("prune config local users: %w", err)
	}
	return deleted, nil
}
