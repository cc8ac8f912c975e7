package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/cache"
)

// The first keys of the directories' advisory locks (the second is the
// directory id): syncs ("lg") and live streams ("ls").
const (
	syncLockClass   = 0x6c67
	streamLockClass = 0x6c73
)

var _ cache.Locker = (*Store)(nil)

// TryLockDirectory takes a session-level advisory lock on a connection
// held from the pool until release: PostgreSQL ends it with that session,
// so a replica killed mid-sync (its connection gone) leaves no stuck lock.
func (s *Store) TryLockDirectory(ctx context.Context, dirID uint64) (func(), bool, error) {
	return s.tryLock(ctx, syncLockClass, dirID)
}

// TryLockStream: see cache.Locker; as TryLockDirectory.
func (s *Store) TryLockStream(ctx context.Context, dirID uint64) (func(), bool, error) {
	return s.tryLock(ctx, streamLockClass, dirID)
}

func (s *Store) tryLock(ctx context.Context, class int, dirID uint64) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, unavailable(fmt.Errorf("sync lock: %w", err))
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::int, $2::int)`, class, int32(dirID)).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, unavailable(fmt.Errorf("sync lock: %w", err))
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	return func() {
		// A failed unlock (the connection broke) ended the lock already;
		// the connection is not reused in that case.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1::int, $2::int)`, class, int32(dirID)); err != nil {
			conn.Conn().Close(ctx) //nolint:errcheck // broken anyway
		}
		conn.Release()
	}, true, nil
}
