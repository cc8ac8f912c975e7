package pgstore

import (
	"context"
	"fmt"
	"sync"
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

// lockCheck is how often a held lock's connection is pinged. A broken
// connection fails the ping at once; one that stops answering fails it
// after lockPingTimeout (a slow but live server is not taken for a lost
// lock, which would stop a long sync for nothing). A lock is therefore
// reported lost (cache.Lock.Lost) within about 1 s of its connection
// breaking, or 4 s of it hanging.
const (
	lockCheck       = time.Second
	lockPingTimeout = 3 * time.Second
)

// TryLockDirectory takes a session-level advisory lock on a connection
// held from the pool until release: PostgreSQL ends it with that session,
// so a replica killed mid-sync (its connection gone) leaves no stuck lock.
// The same holds when that connection breaks while this replica lives
// (PostgreSQL restarted): the lock is then reported lost.
func (s *Store) TryLockDirectory(ctx context.Context, dirID uint64) (cache.Lock, bool, error) {
	return s.tryLock(ctx, syncLockClass, dirID)
}

// TryLockStream: see cache.Locker; as TryLockDirectory.
func (s *Store) TryLockStream(ctx context.Context, dirID uint64) (cache.Lock, bool, error) {
	return s.tryLock(ctx, streamLockClass, dirID)
}

func (s *Store) tryLock(ctx context.Context, class int, dirID uint64) (cache.Lock, bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return cache.Lock{}, false, unavailable(fmt.Errorf("sync lock: %w", err))
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::int, $2::int)`, class, int32(dirID)).Scan(&ok); err != nil {
		conn.Release()
		return cache.Lock{}, false, unavailable(fmt.Errorf("sync lock: %w", err))
	}
	if !ok {
		conn.Release()
		return cache.Lock{}, false, nil
	}
	// The watch owns the connection until release stops it.
	lost, stop, stopped := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(lockCheck)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(context.Background(), lockPingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				s.log.Warn("a cross-replica lock was lost with its connection", "class", class, "directory_id", dirID, "err", err)
				close(lost)
				return
			}
		}
	}()
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			<-stopped
			// A failed unlock (the connection broke) ended the lock
			// already; the connection is not reused in that case.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1::int, $2::int)`, class, int32(dirID)); err != nil {
				conn.Conn().Close(ctx) //nolint:errcheck // broken anyway
			}
			conn.Release()
		})
	}
	return cache.Lock{Release: release, Lost: lost}, true, nil
}
