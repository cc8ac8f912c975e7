package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/ldapgate/ldapgate/account"
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
	now := ConfigLocalNames(names)
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
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("config local users: %w", err)
		}
		var err2 error
		if deleted, err2 = DeleteDroppedLocalUsers(tx, before, now); err2 != nil {
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

// ConfigLocalNames normalises, sorts and dedups the config file's local
// user names, as every backend's PruneConfigLocalUsers records them.
func ConfigLocalNames(names []string) []string {
	now := make([]string, 0, len(names))
	for _, n := range names {
		if n = account.NormalizeName(n); n != "" {
			now = append(now, n)
		}
	}
	slices.Sort(now)
	return slices.Compact(now)
}

// DeleteDroppedLocalUsers deletes, in tx, the local users named in before
// (last time's list) but not in now (sorted); a name that became a
// directory user or is gone is skipped. It returns the names deleted. The
// one body of every backend's PruneConfigLocalUsers.
func DeleteDroppedLocalUsers(tx Txn, before, now []string) ([]string, error) {
	var deleted []string
	for _, n := range before {
		if _, still := slices.BinarySearch(now, n); still {
			continue
		}
		u, err := tx.UserByName(n)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return nil, err
		case u.Source != account.SourceLocal:
			continue
		}
		if err := tx.DeleteUser(u.ID); err != nil {
			return nil, err
		}
		deleted = append(deleted, n)
	}
	return deleted, nil
}

// UpdateUserTx is every backend's UpdateUser inside its transaction: read
// user id, let fn change it, write it back (ErrNotFound, ErrNameTaken on a
// rename clash, or fn's error).
func UpdateUserTx(tx Txn, id uint64, fn func(*account.User) error) (account.User, error) {
	u, err := tx.UserByID(id)
	if err != nil {
		return account.User{}, err
	}
	if err := fn(&u); err != nil {
		return account.User{}, err
	}
	u.ID = id
	if err := tx.PutUser(&u); err != nil {
		return account.User{}, err
	}
	return u, nil
}
