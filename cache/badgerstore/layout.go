package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/cache"
)

// Store layout versions (SPEC §12: upgrades keep the store).
//
// Operators upgrade by replacing the binary and keeping data_dir, so a
// store written by any earlier ldapgate must open in a later one, and a
// store a later one has changed must not be read wrongly by an earlier one.
// The key meta/layout holds the layout version as decimal text. A store
// without it that holds any key was written before versions existed
// (layout 1: ldapgate up to eeaaaf9, the first tranche's release); a store
// holding no key at all is new and gets the current version at once.
//
// Open compares the stored version with layoutCurrent: equal, the store is
// used as is; older, the steps from it to the current one run in order,
// each in one Update (a big one goes through the journal, bigtx.go) that
// also writes the version it reaches, so a step is all or nothing and a
// failed or interrupted one runs again at the next start; newer, Open
// refuses with ErrNewerLayout before writing anything.
//
// A change to how anything is stored (a key, a record's encoding, a
// meaning) appends its step to layoutSteps; the test of the step seeds a
// store at the previous layout (seedLayout in layout_test.go) and checks
// what Open made of it. A change an older binary would misread, or lose
// by rewriting a record without it, takes a step even when the step has
// nothing to convert: the bump is what makes older binaries refuse the
// store. Only what older code ignores harmlessly (a new key prefix it
// never reads, a field it never rewrites) needs none.
//
// Another backend (PostgreSQL, issue 12) keeps the same idea with its own
// numbers: a schema version stored with the data, an ordered list of steps
// each committed with the version it reaches, and refusal of a newer one.
// A copy from badger to it starts from a store Open has brought to the
// current layout.
const keyLayout = "meta/layout"

// layoutStep migrates a store from layout from to layout from+1 inside one
// transaction. fn must read what it changes through tx (it may run again
// on a conflict, or in big mode), and returns a short account of what it
// did, for the log.
type layoutStep struct {
	from int    // the layout it migrates from (its index in layoutSteps + 1)
	name string // what it changes, for the log and errors
	fn   func(tx *Tx) (string, error)
}

// layoutSteps, in order: layoutSteps[i] migrates layout i+1 to i+2.
// A var so tests can add steps.
var layoutSteps = []layoutStep{
	{from: 1, name: "record the layout version", fn: func(*Tx) (string, error) {
		// Layout 2 changes nothing that layout 1 stored; it only adds
		// meta/layout, so that from now on an older binary refuses a
		// store it cannot read.
		return "no record changed", nil
	}},
	{from: 2, name: "user records carry ldap_status", fn: func(*Tx) (string, error) {
		// User records of codec version 1 decode with an empty
		// ldap_status, which is right for them (nobody was blocked as
		// expired before), so none is rewritten. The bump is what
		// matters: a binary of layout 2 would rewrite a version 2 record
		// without its ldap_status, so it must refuse this store.
		return "no record changed (version 1 user records read as ldap_status empty)", nil
	}},
}

// layoutCurrent is the layout this binary writes.
func layoutCurrent() int { return len(layoutSteps) + 1 }

// readLayout returns the stored layout version: 0 for a new (empty) store,
// 1 for a store written before versions existed.
func (s *Store) readLayout() (int, error) {
	v := 0
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyLayout))
		if errors.Is(err, badger.ErrKeyNotFound) {
			// Any key at all (badger's internal ones are not iterated)
			// means an ldapgate wrote here before the layout key existed.
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			it := txn.NewIterator(opts)
			defer it.Close()
			if it.Rewind(); it.Valid() {
				v = 1
			}
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			n, err := strconv.Atoi(string(b))
			if err != nil || n < 1 {
				return fmt.Errorf("unreadable layout version %q under %s", b, keyLayout)
			}
			v = n
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("read layout version: %w", err)
	}
	return v, nil
}

func newerLayoutErr(found int) error {
	return fmt.Errorf("%w (layout %d); this binary knows up to layout %d: run the newer ldapgate, "+
		"or restore the copy of data_dir taken before the upgrade", cache.ErrNewerLayout, found, layoutCurrent())
}

// stampLayout records the current layout in a store that holds nothing
// yet, before anything else is written into it.
func (s *Store) stampLayout() error {
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyLayout), []byte(strconv.Itoa(layoutCurrent())))
	})
	if err != nil {
		return fmt.Errorf("record layout version: %w", err)
	}
	return nil
}

// migrateLayout runs the steps from layout found to the current one, each
// committed with the version it reaches.
func (s *Store) migrateLayout(ctx context.Context, found int) error {
	for _, st := range layoutSteps[found-1:] {
		var did string
		err := s.Update(ctx, func(tx *Tx) error {
			var err error
			if did, err = st.fn(tx); err != nil {
				return err
			}
			return tx.set([]byte(keyLayout), []byte(strconv.Itoa(st.from+1)))
		})
		if err != nil {
			return fmt.Errorf("migrate store layout %d to %d (%s): %w", st.from, st.from+1, st.name, err)
		}
		s.log.Info("store layout migrated", "from", st.from, "to", st.from+1, "step", st.name, "did", did)
	}
	return nil
}
