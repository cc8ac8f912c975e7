package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
)

// SyncLocalUsers upserts the config file's local_users into the store at
// start (and on reload): created if missing, else their role, hash and
// email follow the file. Their state is kept, so an admin block survives
// a restart. A name already held by a directory user is left to the
// directory (sync rule 4: the directory wins) and logged. A user the file
// named before and no longer does is deleted, sessions and all: removing
// an account from the file must take its password away.
func SyncLocalUsers(ctx context.Context, store cache.Backend, locals []config.LocalUser) error {
	names := make([]string, 0, len(locals))
	for _, lu := range locals {
		names = append(names, lu.Username)
	}
	for _, lu := range locals {
		name := account.NormalizeName(lu.Username)
		if name == "" {
			continue
		}
		hash := lu.PasswordHash.Reveal()
		if err := checkStoredHash(hash); err != nil {
			return fmt.Errorf("local user %q: %w", name, err)
		}
		cur, err := store.UserByName(ctx, name)
		switch {
		case errors.Is(err, cache.ErrNotFound):
			_, err := store.CreateUser(ctx, account.User{
				Username: name, Email: lu.Email, Role: lu.Role, State: account.StateActive,
				Source: account.SourceLocal, PasswordHash: hash, Groups: []string{},
			})
			if err != nil {
				return fmt.Errorf("local user %q: %w", name, err)
			}
			continue
		case err != nil:
			return fmt.Errorf("local user %q: %w", name, err)
		}
		if cur.Source != account.SourceLocal {
			slog.Default().Warn("local user from the config file is a directory user in the store; the directory wins",
				"username", name, "directory_id", cur.DirectoryID)
			continue
		}
		if cur.Role == lu.Role && cur.PasswordHash == hash && cur.Email == lu.Email {
			continue
		}
		_, err = store.UpdateUser(ctx, cur.ID, func(u *account.User) error {
			if u.Source != account.SourceLocal {
				return nil
			}
			u.Role, u.PasswordHash, u.Email = lu.Role, hash, lu.Email
			return nil
		})
		if err != nil {
			return fmt.Errorf("local user %q: %w", name, err)
		}
	}
	// Last: a failed upsert above returns first and removes nobody.
	gone, err := store.PruneConfigLocalUsers(ctx, names)
	if err != nil {
		return fmt.Errorf("local users: %w", err)
	}
	for _, n := range gone {
		slog.Default().Warn("local user removed from the config file: deleted, with their sessions", "username", n)
	}
	return nil
}

// checkStoredHash checks a hash is one VerifyPassword can read, so a bad
// local_users entry fails the start instead of every login.
func checkStoredHash(h string) error {
	_, err := VerifyPassword(h, "")
	return err
}
