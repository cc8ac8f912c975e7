package cache

import (
	"errors"
	"slices"

	"github.com/ldapgate/ldapgate/account"
)

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
