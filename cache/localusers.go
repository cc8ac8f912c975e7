package cache

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/ldapgate/ldapgate/account"
)

// The config file's local users.
//
// local_users are upserted into the store at start and on reload
// (auth.SyncLocalUsers). The names the file gave last time are kept in one
// record per store, so that a user removed from the file is deleted,
// sessions and all, instead of keeping a password the operator took away.
// Local users created through the API were never in the file and are never
// touched.

// PruneLocalUsers is the body of every store's PruneConfigLocalUsers, run
// in its transaction. stored is the record of the names the file gave last
// time (nil when none; one that does not decode deletes nobody, and is
// replaced), names the file's names now. It deletes the local users named
// last time but no longer; a name that became a directory user (sync rule
// 4 converted it) or is gone is skipped. It returns the names deleted and
// the record to store for next time.
func PruneLocalUsers(tx Txn, stored []byte, names []string) (deleted []string, record []byte, err error) {
	now := configLocalNames(names)
	var before []string
	if stored != nil && json.Unmarshal(stored, &before) != nil {
		before = nil
	}
	for _, n := range before {
		if _, still := slices.BinarySearch(now, n); still {
			continue
		}
		u, err := tx.UserByName(n)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return nil, nil, err
		case u.Source != account.SourceLocal:
			continue
		}
		if err := tx.DeleteUser(u.ID); err != nil {
			return nil, nil, err
		}
		deleted = append(deleted, n)
	}
	record, err = json.Marshal(now)
	if err != nil {
		return nil, nil, err
	}
	return deleted, record, nil
}

// configLocalNames normalises, sorts and dedups the config file's local
// user names, as they are recorded.
func configLocalNames(names []string) []string {
	now := make([]string, 0, len(names))
	for _, n := range names {
		if n = account.NormalizeName(n); n != "" {
			now = append(now, n)
		}
	}
	slices.Sort(now)
	return slices.Compact(now)
}
