package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/dgraph-io/badger/v4"

	"github.com/ldapgate/ldapgate/cache"
)

// Trusted name checks.
//
// PutUser looks up the name and (directory, uuid) index keys of every new
// user, so that two users never share one. On a first sync of 100k users
// those two lookups were a fifth of the apply's CPU, and they only repeat
// what the syncer's plan already checked against the store it read. A
// caller may therefore present a NamesToken taken before it read the
// store, and PutUser skips the lookups for new users while the token still
// holds. It holds when no name or uuid has been given out since:
//
//   - every transaction that sets a name or uuid index key without trust
//     also writes the key "nv" (a random value, written blindly so such
//     writers never conflict with each other); a trusted transaction reads
//     "nv" and compares it with the token: one committed before it began
//     is seen, one committed before it commits makes its commit fail with
//     a conflict (badger's serializable isolation), and its retry sees it;
//   - trusted writers do not write "nv" (the batches of one sync
//     would conflict with each other); they take turns instead (TrustNames
//     is a TryLock) and each turn ends with a new generation, which voids
//     every token taken before it.
const keyNamesVersion = "nv"

// NamesToken returns the token to take before reading the users a later
// trusted write relies on.
func (s *Store) NamesToken(ctx context.Context) (cache.NamesToken, error) {
	if err := ctx.Err(); err != nil {
		return cache.NamesToken{}, err
	}
	t := cache.NamesToken{Gen: s.trustGen.Load()}
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		t.Version, err = namesVersion(txnLookup(txn))
		return err
	})
	if err != nil {
		return cache.NamesToken{}, fmt.Errorf("names token: %w", err)
	}
	return t, nil
}

// TrustNames starts a turn of trusted writes: ok is false when another
// turn is running (write without trust then). end must be called once the
// turn's last transaction has committed or failed.
func (s *Store) TrustNames() (end func(), ok bool) {
	if !s.trustMu.TryLock() {
		return nil, false
	}
	return func() {
		s.trustGen.Add(1)
		s.trustMu.Unlock()
	}, true
}

// TrustNames makes PutUser skip its index lookups for new users in this
// transaction if t still holds (see names.go), and reports whether it did.
// Call it inside a turn of Store.TrustNames, before any PutUser.
func (tx *Tx) TrustNames(t cache.NamesToken) (bool, error) {
	tx.trusted = false
	if tx.s.trustGen.Load() != t.Gen {
		return false, nil
	}
	v, err := namesVersion(tx.lookup)
	if err != nil {
		return false, err
	}
	tx.trusted = v == t.Version
	return tx.trusted, nil
}

func namesVersion(lookup func([]byte, func([]byte) error) error) (string, error) {
	var v string
	err := lookup([]byte(keyNamesVersion), func(b []byte) error {
		v = string(b)
		return nil
	})
	if errors.Is(err, cache.ErrNotFound) {
		return "", nil
	}
	return v, err
}

// namesChanged records, once per transaction, that an untrusted write gave
// out a name or uuid.
func (tx *Tx) namesChanged() error {
	if tx.trusted || tx.wroteNames {
		return nil
	}
	tx.wroteNames = true
	return tx.set([]byte(keyNamesVersion), idBytes(rand.Uint64()))
}
