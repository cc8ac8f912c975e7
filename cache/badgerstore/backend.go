package badgerstore

import (
	"context"

	"github.com/ldapgate/ldapgate/cache"
)

// Backend returns s behind the store contract.
func (s *Store) Backend() cache.Backend { return badgerBackend{s} }

// badgerBackend adapts Store's concrete transaction types to the contract.
type badgerBackend struct{ *Store }

var _ cache.Backend = badgerBackend{}

func (b badgerBackend) Update(ctx context.Context, fn func(tx cache.Txn) error) error {
	return b.Store.Update(ctx, func(tx *Tx) error { return fn(tx) })
}

func (b badgerBackend) OpenUserList(ctx context.Context, f cache.UserFilter) (cache.UserCursor, error) {
	l, err := b.Store.OpenUserList(ctx, f)
	if err != nil {
		return nil, err
	}
	return l, nil
}
