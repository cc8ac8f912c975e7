package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// readTx runs fn on a Tx over a read-only snapshot.
func (s *Store) readTx(ctx context.Context, fn func(tx *Tx) error) error {
	return s.view(ctx, func(ptx pgx.Tx) error {
		tx := &Tx{ctx: ctx, s: s, tx: ptx, now: now()}
		return fn(tx)
	})
}

// UserByID: see cache.Backend.
// Served from the replica's LRU while the change feed is fresh (watch.go).
func (s *Store) UserByID(ctx context.Context, id uint64) (account.User, error) {
	if u, ok := s.cachedUser(id); ok {
		// As on badger: Groups is shared with the cache (clipped, so an
		// append copies); a session check allocates nothing.
		if s.hits != nil {
			s.hits.Inc()
		}
		return u, nil
	}
	if s.misses != nil {
		s.misses.Inc()
	}
	gen0 := s.gen.Load()
	var u account.User
	err := s.oneRead(ctx, func(tx *Tx) (err error) { u, err = tx.UserByID(id); return err })
	if err != nil {
		return account.User{}, err
	}
	c := cloneUser(u)
	c.Groups = slices.Clip(c.Groups)
	s.fillUser(gen0, c)
	return u, nil
}

// UserByName: see cache.Backend.
func (s *Store) UserByName(ctx context.Context, name string) (account.User, error) {
	var u account.User
	err := s.oneRead(ctx, func(tx *Tx) (err error) { u, err = tx.UserByName(name); return err })
	return u, err
}

// UserByUUID: see cache.Backend.
func (s *Store) UserByUUID(ctx context.Context, dirID uint64, uuid string) (account.User, error) {
	var u account.User
	err := s.oneRead(ctx, func(tx *Tx) (err error) { u, err = tx.UserByUUID(dirID, uuid); return err })
	return u, err
}

// oneRead runs a single-statement read outside a transaction.
func (s *Store) oneRead(ctx context.Context, fn func(tx *Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return unavailable(fn(&Tx{ctx: ctx, s: s, tx: s.pool, now: now()}))
}

// CreateUser: see cache.CreateUser.
func (s *Store) CreateUser(ctx context.Context, u account.User) (account.User, error) {
	return cache.CreateUser(ctx, s, u)
}

// UpdateUser: see cache.UpdateUser.
func (s *Store) UpdateUser(ctx context.Context, id uint64, fn func(*account.User) error) (account.User, error) {
	return cache.UpdateUser(ctx, s, id, fn)
}

// DeleteUser: see cache.Backend.
func (s *Store) DeleteUser(ctx context.Context, id uint64) error {
	return s.Update(ctx, func(tx cache.Txn) error { return tx.DeleteUser(id) })
}

// queryUsers calls fn with each user the query yields.
func queryUsers(ctx context.Context, q querier, sql string, args []any, fn func(account.User) error) error {
	rows, err := q.Query(ctx, `SELECT `+userColumns+` FROM users `+sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var r userRow
	dest := r.dest()
	for rows.Next() {
		r.u.Groups = nil
		r.lastLogin, r.lastSync = nil, nil
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		if err := fn(r.user()); err != nil {
			return err
		}
	}
	return rows.Err()
}

// userFilter is the WHERE clause of f and its arguments.
func userFilter(f cache.UserFilter) (string, []any) {
	var (
		conds []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.State != "" {
		add("state = $%d", f.State)
	}
	if f.Role != "" {
		add("role = $%d", f.Role)
	}
	if f.Source != "" {
		add("source = $%d", f.Source)
	}
	if f.DirectoryID != 0 {
		add("directory_id = $%d", int64(f.DirectoryID))
	}
	if f.Query != "" {
		// strpos, not LIKE: the search box's text is literal (% and _ too).
		args = append(args, strings.ToLower(f.Query))
		n := len(args)
		conds = append(conds, fmt.Sprintf("(strpos(username, $%d) > 0 OR strpos(lower(email), $%d) > 0 OR strpos(lower(display_name), $%d) > 0)", n, n, n))
	}
	if len(conds) == 0 {
		return "", args
	}
	return "WHERE " + strings.Join(conds, " AND "), args
}

// pageSQL adds the order and the page bounds of f.
func pageSQL(where string, args []any, f cache.UserFilter) (string, []any) {
	sql := where + " ORDER BY id"
	args = slices.Clone(args)
	if f.Limit > 0 {
		args = append(args, f.Limit)
		sql += fmt.Sprintf(" LIMIT $%d", len(args))
	}
	if f.Offset > 0 {
		args = append(args, f.Offset)
		sql += fmt.Sprintf(" OFFSET $%d", len(args))
	}
	return sql, args
}

// ListUsers: see cache.Backend. Ordered by id.
func (s *Store) ListUsers(ctx context.Context, f cache.UserFilter) ([]account.User, int, error) {
	l, err := s.OpenUserList(ctx, f)
	if err != nil {
		return nil, 0, err
	}
	defer l.Close()
	page := make([]account.User, 0, l.Len())
	if err := l.Each(ctx, func(u *account.User) error { page = append(page, *u); return nil }); err != nil {
		return nil, 0, err
	}
	return page, l.Total(), nil
}

// userList is a cache.UserCursor over a read-only snapshot transaction.
type userList struct {
	tx         pgx.Tx
	sql        string
	args       []any
	len, total int
	once       sync.Once
}

// OpenUserList: see cache.Backend. The snapshot stays open until Close.
func (s *Store) OpenUserList(ctx context.Context, f cache.UserFilter) (cache.UserCursor, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", unavailable(err))
	}
	where, args := userFilter(f)
	l := &userList{tx: tx}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM users `+where, args...).Scan(&l.total); err != nil {
		l.Close()
		return nil, fmt.Errorf("list users: %w", unavailable(err))
	}
	l.len = max(0, l.total-max(f.Offset, 0))
	if f.Limit > 0 {
		l.len = min(l.len, f.Limit)
	}
	l.sql, l.args = pageSQL(where, args, f)
	return l, nil
}

func (l *userList) Len() int   { return l.len }
func (l *userList) Total() int { return l.total }

func (l *userList) Each(ctx context.Context, fn func(*account.User) error) error {
	if l.len == 0 {
		return nil
	}
	err := queryUsers(ctx, l.tx, l.sql, l.args, func(u account.User) error { return fn(&u) })
	if err != nil {
		return fmt.Errorf("list users: %w", unavailable(err))
	}
	return nil
}

func (l *userList) Close() {
	l.once.Do(func() { _ = l.tx.Rollback(context.Background()) })
}

// UsersOfDirectory: see cache.Backend.
func (s *Store) UsersOfDirectory(ctx context.Context, dirID uint64) ([]account.User, error) {
	var out []account.User
	err := queryUsers(ctx, s.pool, `WHERE directory_id = $1 ORDER BY id`, []any{int64(dirID)}, func(u account.User) error {
		out = append(out, u)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("users of directory %d: %w", dirID, err)
	}
	return out, nil
}

// ForEachUser: see cache.Backend (one snapshot).
func (s *Store) ForEachUser(ctx context.Context, fn func(account.User) error) error {
	return s.view(ctx, func(tx pgx.Tx) error { return queryUsers(ctx, tx, `ORDER BY id`, nil, fn) })
}

// CountUsers: see cache.Backend.
func (s *Store) CountUsers(ctx context.Context) (map[uint64]map[account.State]int, error) {
	out := map[uint64]map[account.State]int{}
	rows, err := s.pool.Query(ctx, `SELECT directory_id, state, count(*) FROM users GROUP BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("count users: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			dir   int64
			state string
			n     int
		)
		if err := rows.Scan(&dir, &state, &n); err != nil {
			return nil, fmt.Errorf("count users: %w", err)
		}
		m := out[uint64(dir)]
		if m == nil {
			m = map[account.State]int{}
			out[uint64(dir)] = m
		}
		m[account.State(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count users: %w", err)
	}
	return out, nil
}

const keyConfigLocalUsers = "config_local_users"

// PruneConfigLocalUsers: see cache.PruneLocalUsers.
func (s *Store) PruneConfigLocalUsers(ctx context.Context, names []string) ([]string, error) {
	var deleted []string
	err := s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
		var stored []byte
		err := tx.queryRow(`SELECT value FROM meta WHERE key = $1`, []any{keyConfigLocalUsers}, &stored)
		if err != nil && !errors.Is(err, cache.ErrNotFound) {
			return fmt.Errorf("config local users: %w", err)
		}
		var record []byte
		if deleted, record, err = cache.PruneLocalUsers(tx, stored, names); err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO meta (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, keyConfigLocalUsers, record)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("prune config local users: %w", err)
	}
	return deleted, nil
}
