package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/cache"
)

// syncLockClass is the first key of the directories' sync advisory locks
// (the second is the directory id): "lg".
const syncLockClass = 0x6c67

var _ cache.Locker = (*Store)(nil)

// TryLockDirectory takes a session-level advisory lock on a connection
// held from the pool until release: PostgreSQL ends it with that session,
// so a replica killed mid-sync (its connection gone) leaves no stuck lock.
func (s *Store) TryLockDirectory(ctx context.Context, dirID uint64) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, unavailable(fmt.Errorf("sync lock: %w", err))
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::int, $2::int)`, syncLockClass, int32(dirID)).Scan(&ok); err != nil {
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
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1::int, $2::int)`, syncLockClass, int32(dirID)); err != nil {
			conn.Conn().Close(ctx) //nolint:errcheck // broken anyway
		}
		conn.Release()
	}, true, nil
}
