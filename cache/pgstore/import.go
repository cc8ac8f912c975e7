package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// ImportReport says what Import copied.
type ImportReport struct {
	Users, Directories, Runs, AuditEntries int
	// SessionsDropped: sessions are not copied (users log in again).
	SessionsDropped int
}

// ImportSource is what Import reads besides the store contract: the ids
// given to config-file directories by name.
type ImportSource interface {
	cache.Backend
	DirectoryNames(ctx context.Context) (map[string]uint64, error)
}

// ErrNotEmpty: Import refuses a database that already holds users,
// directories or runs.
var ErrNotEmpty = errors.New("the PostgreSQL store is not empty")

// Import copies src (a one-box badger store) into this empty store in one
// transaction, all or nothing: users with their ids, states, roles and
// reasons; API directories with their bind passwords; the ids of
// config-file directories; naming overrides; live-change cookies; runs and
// their audit.
// Sessions are not copied.
func (s *Store) Import(ctx context.Context, src ImportSource) (ImportReport, error) {
	var rep ImportReport
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return rep, unavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit: a no-op
	var used bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM directories)
		OR EXISTS (SELECT 1 FROM runs) OR EXISTS (SELECT 1 FROM directory_names)`).Scan(&used); err != nil {
		return rep, err
	}
	if used {
		return rep, ErrNotEmpty
	}
	var rows [][]any
	err = src.ForEachUser(ctx, func(u account.User) error {
		rows = append(rows, []any{int64(u.ID), u.Username, u.Email, u.DisplayName, u.Role, u.Groups, string(u.State),
			string(u.BlockReason), string(u.LDAPStatus), string(u.Source), int64(u.DirectoryID), u.LDAPDN,
			u.LDAPUUID, u.PasswordHash, pgTime(u.CreatedAt), pgTime(u.UpdatedAt), nullTime(u.LastLoginAt), nullTime(u.LastSyncedAt)})
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("read users: %w", err)
	}
	cols := []string{"id", "username", "email", "display_name", "role", "groups", "state", "block_reason", "ldap_status",
		"source", "directory_id", "ldap_dn", "ldap_uuid", "password_hash", "created_at", "updated_at", "last_login_at", "last_synced_at"}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"users"}, cols, pgx.CopyFromRows(rows)); err != nil {
		return rep, fmt.Errorf("write users: %w", err)
	}
	rep.Users = len(rows)

	names, err := src.DirectoryNames(ctx)
	if err != nil {
		return rep, err
	}
	dirIDs := map[uint64]bool{}
	for name, id := range names {
		dirIDs[id] = true
		if _, err := tx.Exec(ctx, `INSERT INTO directory_names (name, id) VALUES ($1, $2)`, name, int64(id)); err != nil {
			return rep, fmt.Errorf("write directory names: %w", err)
		}
	}
	dirs, err := src.Directories(ctx)
	if err != nil {
		return rep, err
	}
	for _, d := range dirs {
		dirIDs[d.ID] = true
		b, err := cache.EncodeDirectory(d)
		if err != nil {
			return rep, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO directories (id, record) VALUES ($1, $2)`, int64(d.ID), b); err != nil {
			return rep, fmt.Errorf("write directory %q: %w", d.Name, err)
		}
	}
	rep.Directories = len(dirs)
	for _, id := range slices.Sorted(maps.Keys(dirIDs)) {
		cookie, err := src.LiveCookie(ctx, id)
		if err != nil {
			return rep, err
		}
		if len(cookie) > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO live_cookies (id, cookie) VALUES ($1, $2)`, int64(id), cookie); err != nil {
				return rep, fmt.Errorf("write live cookie of directory %d: %w", id, err)
			}
		}
		n, err := src.NamingOverride(ctx, id)
		if err != nil {
			return rep, err
		}
		if n != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO directory_naming (id, naming) VALUES ($1, $2)`, int64(id), n); err != nil {
				return rep, fmt.Errorf("write naming of directory %d: %w", id, err)
			}
		}
	}

	runs, err := src.Runs(ctx, 0, 0)
	if err != nil {
		return rep, err
	}
	slices.Reverse(runs) // oldest first
	for _, r := range runs {
		b, err := json.Marshal(r)
		if err != nil {
			return rep, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO runs (id, directory_id, record) VALUES ($1, $2, $3)`, int64(r.ID), int64(r.DirectoryID), b); err != nil {
			return rep, fmt.Errorf("write run %d: %w", r.ID, err)
		}
		es, err := src.RunChanges(ctx, r.ID)
		if err != nil {
			return rep, err
		}
		var audit []auditChunk
		for i := range es {
			if audit, err = appendAuditEntry(audit, r.ID, &es[i]); err != nil {
				return rep, err
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit"}, []string{"run_id", "seq", "record"}, auditRows(audit)); err != nil {
			return rep, fmt.Errorf("write audit of run %d: %w", r.ID, err)
		}
		rep.AuditEntries += len(es)
	}
	rep.Runs = len(runs)

	// New ids continue after the copied ones.
	for _, q := range []string{
		`SELECT setval('users_id_seq', GREATEST((SELECT max(id) FROM users), 1), (SELECT count(*) > 0 FROM users))`,
		`SELECT setval('directories_id_seq', GREATEST((SELECT max(id) FROM (SELECT id FROM directories UNION ALL SELECT id FROM directory_names) d), 1),
			(SELECT count(*) > 0 FROM (SELECT id FROM directories UNION ALL SELECT id FROM directory_names) d))`,
		`SELECT setval(pg_get_serial_sequence('runs', 'id'), GREATEST((SELECT max(id) FROM runs), 1), (SELECT count(*) > 0 FROM runs))`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return rep, fmt.Errorf("id sequences: %w", err)
		}
	}
	if rep.SessionsDropped, err = src.CountSessions(ctx); err != nil {
		return rep, err
	}
	if err := tx.Commit(ctx); err != nil {
		return rep, unavailable(err)
	}
	return rep, nil
}
