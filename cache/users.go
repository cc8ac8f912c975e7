package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/account"
)

// Updater runs fn in one store transaction (Backend.Update).
type Updater interface {
	Update(ctx context.Context, fn func(tx Txn) error) error
}

// PrepareUser applies the rules every store's Txn.PutUser starts with, and
// returns the stored record u replaces (nil for a new user):
//   - the username is normalised into u; an empty one is refused;
//   - ldap_status explains blocked_in_ldap only (SPEC §2): an admin block
//     or unblock, or any other state, clears it, once, here;
//   - a zero id draws one with newID (recorded in assigned, the ids the
//     earlier attempts of this Update drew, which are still new when a
//     rerun finds them missing); a non-zero id must be stored (ErrNotFound:
//     ids are only ever assigned here, never chosen by callers);
//   - CreatedAt is kept from the stored record (now for a new user) unless
//     the caller set one; UpdatedAt is now.
func PrepareUser(tx Txn, u *account.User, now time.Time, newID func() (uint64, error), assigned map[uint64]bool) (*account.User, error) {
	u.Username = account.NormalizeName(u.Username)
	if u.Username == "" {
		return nil, fmt.Errorf("put user %d: empty username", u.ID)
	}
	if u.State != account.StateBlockedInLDAP {
		u.LDAPStatus = account.LDAPStatusNone
	}
	var old *account.User
	if u.ID == 0 {
		id, err := newID()
		if err != nil {
			return nil, fmt.Errorf("put user %q: %w", u.Username, err)
		}
		assigned[id] = true
		u.ID = id
	} else {
		o, err := tx.UserByID(u.ID)
		switch {
		case err == nil:
			old = &o
		case errors.Is(err, ErrNotFound) && assigned[u.ID]:
			// assigned by an attempt that hit a conflict: still new.
		default:
			return nil, fmt.Errorf("put user: %w", err)
		}
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now
		if old != nil {
			u.CreatedAt = old.CreatedAt
		}
	}
	u.UpdatedAt = now
	return old, nil
}

// CreateUser is every store's Backend.CreateUser: u stored as a new user
// (its id ignored), returned with its id and timestamps. ErrNameTaken.
func CreateUser(ctx context.Context, s Updater, u account.User) (account.User, error) {
	var out account.User
	err := s.Update(ctx, func(tx Txn) error {
		out = u
		out.ID = 0
		return tx.PutUser(&out)
	})
	if err != nil {
		return account.User{}, fmt.Errorf("create user: %w", err)
	}
	return out, nil
}

// UpdateUser is every store's Backend.UpdateUser: fn applied to user id in
// one transaction (more than once on conflicts) and the result stored; the
// id cannot change. ErrNotFound, ErrNameTaken on a rename clash, or fn's
// error.
func UpdateUser(ctx context.Context, s Updater, id uint64, fn func(*account.User) error) (account.User, error) {
	var out account.User
	err := s.Update(ctx, func(tx Txn) error {
		u, err := tx.UserByID(id)
		if err != nil {
			return err
		}
		if err := fn(&u); err != nil {
			return err
		}
		u.ID = id
		if err := tx.PutUser(&u); err != nil {
			return err
		}
		out = u
		return nil
	})
	if err != nil {
		return account.User{}, fmt.Errorf("update user %d: %w", id, err)
	}
	return out, nil
}
