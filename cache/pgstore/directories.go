package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
)

// DirectoryIDForName: see badgerstore.Store.DirectoryIDForName.
func (s *Store) DirectoryIDForName(ctx context.Context, name string) (uint64, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	var id int64
	err := s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
		err := tx.queryRow(`SELECT id FROM directory_names WHERE name = $1`, []any{name}, &id)
		if !errors.Is(err, cache.ErrNotFound) {
			return err
		}
		if err := tx.queryRow(`SELECT nextval('directories_id_seq')`, nil, &id); err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO directory_names (name, id) VALUES ($1, $2)`, name, id)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("directory id for %q: %w", name, err)
	}
	return uint64(id), nil
}

// SaveDirectory: see badgerstore.Store.SaveDirectory.
func (s *Store) SaveDirectory(ctx context.Context, d config.Directory) (config.Directory, error) {
	replace := d.ID != 0
	d.Managed = "api"
	err := s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
		if !replace {
			var id int64
			if err := tx.queryRow(`SELECT nextval('directories_id_seq')`, nil, &id); err != nil {
				return err
			}
			d.ID = uint64(id)
		}
		b, err := cache.EncodeDirectory(d)
		if err != nil {
			return err
		}
		if replace {
			n, err := tx.exec(`UPDATE directories SET record = $2 WHERE id = $1`, int64(d.ID), b)
			if err == nil && n == 0 {
				err = cache.ErrNotFound
			}
			return err
		}
		_, err = tx.exec(`INSERT INTO directories (id, record) VALUES ($1, $2)`, int64(d.ID), b)
		return err
	})
	if err != nil {
		return config.Directory{}, fmt.Errorf("save directory %q: %w", d.Name, err)
	}
	return d, nil
}

// Directories: see cache.Backend (ordered by id).
func (s *Store) Directories(ctx context.Context) ([]config.Directory, error) {
	rows, err := s.pool.Query(ctx, `SELECT record FROM directories ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("directories: %w", err)
	}
	defer rows.Close()
	var out []config.Directory
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("directories: %w", err)
		}
		d, err := cache.DecodeDirectory(b)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("directories: %w", err)
	}
	return out, nil
}

// DeleteDirectory: see cache.Backend.
func (s *Store) DeleteDirectory(ctx context.Context, id uint64) error {
	err := s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
		n, err := tx.exec(`DELETE FROM directories WHERE id = $1`, int64(id))
		if err != nil {
			return err
		}
		if n == 0 {
			return cache.ErrNotFound
		}
		_, err = tx.exec(`DELETE FROM directory_naming WHERE id = $1`, int64(id))
		return err
	})
	if err != nil {
		return fmt.Errorf("delete directory %d: %w", id, err)
	}
	return nil
}

// SetNamingOverride: see cache.Backend.
func (s *Store) SetNamingOverride(ctx context.Context, dirID uint64, naming string) error {
	err := s.Update(ctx, func(tx cache.Txn) error { return tx.SetNamingOverride(dirID, naming) })
	if err != nil {
		return fmt.Errorf("set naming of directory %d: %w", dirID, err)
	}
	return nil
}

// NamingOverride: see cache.Backend ("" when none).
func (s *Store) NamingOverride(ctx context.Context, dirID uint64) (string, error) {
	var naming string
	err := s.oneRead(ctx, func(tx *Tx) error {
		return tx.queryRow(`SELECT naming FROM directory_naming WHERE id = $1`, []any{int64(dirID)}, &naming)
	})
	if errors.Is(err, cache.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("naming of directory %d: %w", dirID, err)
	}
	return naming, nil
}

// LiveCookie: see cache.Backend (nil when none).
func (s *Store) LiveCookie(ctx context.Context, dirID uint64) ([]byte, error) {
	var v []byte
	err := s.oneRead(ctx, func(tx *Tx) error {
		return tx.queryRow(`SELECT cookie FROM live_cookies WHERE id = $1`, []any{int64(dirID)}, &v)
	})
	if errors.Is(err, cache.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("live cookie of directory %d: %w", dirID, err)
	}
	return v, nil
}

// SetLiveCookie: see cache.Backend.
func (s *Store) SetLiveCookie(ctx context.Context, dirID uint64, cookie []byte) error {
	err := s.Update(ctx, func(t cache.Txn) error {
		tx := t.(*Tx)
		var err error
		if len(cookie) == 0 {
			_, err = tx.exec(`DELETE FROM live_cookies WHERE id = $1`, int64(dirID))
		} else {
			_, err = tx.exec(`INSERT INTO live_cookies (id, cookie) VALUES ($1, $2)
				ON CONFLICT (id) DO UPDATE SET cookie = excluded.cookie`, int64(dirID), cookie)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("set live cookie of directory %d: %w", dirID, err)
	}
	return nil
}
