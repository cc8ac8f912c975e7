package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/config"
)

// DirectoryIDForName returns the stable id of a config-file directory,
// assigning one on first sight. Names compare case-insensitively. The ids
// come from the same sequence as API directories, so the two never clash.
func (s *Store) DirectoryIDForName(ctx context.Context, name string) (uint64, error) {
	k := keyStr(pDirName, strings.ToLower(strings.TrimSpace(name)))
	var id uint64
	err := s.Update(ctx, func(tx *Tx) error {
		v, err := tx.get(k)
		switch {
		case err == nil:
			id = bytesID(v)
			return nil
		case !errors.Is(err, cache.ErrNotFound):
			return err
		}
		if id, err = nextID(s.dirSeq); err != nil {
			return err
		}
		return tx.set(k, idBytes(id))
	})
	if err != nil {
		return 0, fmt.Errorf("directory id for %q: %w", name, err)
	}
	return id, nil
}

// SaveDirectory creates (ID 0: an id is assigned) or replaces an
// API-created directory, bind password included. Managed is set to "api".
// ErrNotFound when replacing an id that is not stored.
func (s *Store) SaveDirectory(ctx context.Context, d config.Directory) (config.Directory, error) {
	replace := d.ID != 0
	if !replace {
		id, err := nextID(s.dirSeq)
		if err != nil {
			return config.Directory{}, fmt.Errorf("save directory %q: %w", d.Name, err)
		}
		d.ID = id
	}
	d.Managed = "api"
	b, err := cache.EncodeDirectory(d)
	if err != nil {
		return config.Directory{}, fmt.Errorf("save directory %q: %w", d.Name, err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		if replace {
			// Ids are only assigned here; an unknown one is a caller bug
			// (or a directory deleted meanwhile), never a create.
			if _, err := tx.get(key(pDir, d.ID)); err != nil {
				return err
			}
		}
		return tx.set(key(pDir, d.ID), b)
	})
	if err != nil {
		return config.Directory{}, fmt.Errorf("save directory %q: %w", d.Name, err)
	}
	return d, nil
}

// Directories returns the API-created directories, ordered by id, with
// their bind passwords.
func (s *Store) Directories(ctx context.Context) ([]config.Directory, error) {
	var out []config.Directory
	err := s.db.View(func(txn *badger.Txn) error {
		return iterate(ctx, txn, []byte(pDir), func(_, v []byte) error {
			d, err := cache.DecodeDirectory(v)
			if err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("directories: %w", err)
	}
	return out, nil
}

// DeleteDirectory removes an API-created directory and any naming override
// of its id. Its users are the syncer's business (rule 9). ErrNotFound.
func (s *Store) DeleteDirectory(ctx context.Context, id uint64) error {
	err := s.Update(ctx, func(tx *Tx) error {
		if _, err := tx.get(key(pDir, id)); err != nil {
			return err
		}
		if err := tx.del(key(pDir, id)); err != nil {
			return err
		}
		return tx.del(key(pDirNaming, id))
	})
	if err != nil {
		return fmt.Errorf("delete directory %d: %w", id, err)
	}
	return nil
}

// SetNamingOverride records the naming of a migrated config directory
// ("" removes the override). Use Tx.SetNamingOverride to commit it with the
// renames.
func (s *Store) SetNamingOverride(ctx context.Context, dirID uint64, naming string) error {
	err := s.Update(ctx, func(tx *Tx) error { return tx.SetNamingOverride(dirID, naming) })
	if err != nil {
		return fmt.Errorf("set naming of directory %d: %w", dirID, err)
	}
	return nil
}

// NamingOverride returns the recorded naming of a directory, "" if none.
func (s *Store) NamingOverride(ctx context.Context, dirID uint64) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var naming string
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key(pDirNaming, dirID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		naming = string(v)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("naming of directory %d: %w", dirID, err)
	}
	return naming, nil
}

// DirectoryNames returns the ids DirectoryIDForName gave out, by name
// (migrate-store copies them: users refer to their directory by id).
func (s *Store) DirectoryNames(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.db.View(func(txn *badger.Txn) error {
		return iterate(ctx, txn, []byte(pDirName), func(k, v []byte) error {
			out[string(k[len(pDirName):])] = bytesID(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("directory names: %w", err)
	}
	return out, nil
}
