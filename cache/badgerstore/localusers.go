package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ldapgate/ldapgate/cache"
)

// The config file's local users.
//
// local_users are upserted into the store at start and on reload
// (auth.SyncLocalUsers). The names the file gave last time are kept under
// one key, so that a user removed from the file is deleted, sessions and
// all, instead of keeping a password the operator took away. Local users
// created through the API were never in the file and are never touched.
const keyConfigLocalUsers = "lc"

// PruneConfigLocalUsers records names (normalised) as the config file's
// local users, and deletes the local users the file named last time but no
// longer does. It returns the names deleted. A name that is now a
// directory user (sync rule 4 converted it) is left alone.
func (s *Store) PruneConfigLocalUsers(ctx context.Context, names []string) ([]string, error) {
	now := cache.ConfigLocalNames(names)
	var deleted []string
	err := s.Update(ctx, func(tx *Tx) error {
		deleted = nil
		var before []string
		err := tx.lookup([]byte(keyConfigLocalUsers), func(v []byte) error {
			// A value that does not decode deletes nobody (it is
			// replaced below): never fail a start over it.
			if json.Unmarshal(v, &before) != nil {
				before = nil
			}
			return nil
		})
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return fmt.Errorf("config local users: %w", err)
		}
		var err2 error
		if deleted, err2 = cache.DeleteDroppedLocalUsers(tx, before, now); err2 != nil {
			return err2
		}
		b, err := json.Marshal(now)
		if err != nil {
			return err
		}
		return tx.set([]byte(keyConfigLocalUsers), b)
	})
	if err != nil {
		return nil, fmt.Errorf("prune config local users: %w", err)
	}
	return deleted, nil
}
