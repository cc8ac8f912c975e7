package pgstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// Cached state across replicas (SPEC §12). Each replica keeps the users it
// reads in an LRU (a session check must stay a memory hit) and auth keeps
// sessions in its own; every write transaction that changes a user or
// ends a session NOTIFYs changesChannel in its commit, and one listener
// connection per replica drops what the notifications name. The listener
// pings while idle: the cache is trusted only while the feed was heard
// from within freshFor, so a replica cut off from PostgreSQL fails closed
// (cache.ErrUnavailable) instead of answering from a stale cache, and a
// feed that reconnects drops everything first (it may have missed some).
const (
	changesChannel = "ldapgate_changes"
	// freshFor: past it without word from the listener the cache is not
	// used. With listenWait + pingTimeout it keeps staleness under 1 s.
	freshFor    = 700 * time.Millisecond
	listenWait  = 200 * time.Millisecond
	pingTimeout = 300 * time.Millisecond
	// userCacheSize bounds the user LRU (one entry is well under 1 KiB).
	userCacheSize = 100_000
	// notifyMax keeps one NOTIFY payload under PostgreSQL's 8000 bytes.
	notifyMax = 7000
	// readTimeout bounds a single-row read, so a hung server answers as
	// unavailable rather than holding a request.
	readTimeout = 2 * time.Second
)

// Watch registers fn for the changes any replica commits (cache.Watcher).
func (s *Store) Watch(fn func(cache.Change)) {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	s.watchers = append(s.watchers, fn)
}

func (s *Store) emit(c cache.Change) {
	s.watchMu.Lock()
	ws := s.watchers
	s.watchMu.Unlock()
	for _, fn := range ws {
		fn(c)
	}
}

// fresh reports whether the change feed was heard from recently enough
// for cached entries to be used.
func (s *Store) fresh() bool {
	return time.Now().UnixNano()-s.heard.Load() < int64(freshFor)
}

// flushAll drops every cached entry here and in the watchers.
func (s *Store) flushAll() {
	s.gen.Add(1)
	s.users.Purge()
	s.emit(cache.Change{All: true})
}

// apply drops what one notification payload names.
func (s *Store) apply(payload string) {
	s.gen.Add(1)
	for item := range strings.SplitSeq(payload, ",") {
		if len(item) < 2 {
			continue
		}
		switch item[0] {
		case 'u':
			if id, err := strconv.ParseUint(item[1:], 10, 64); err == nil {
				s.users.Remove(id)
			}
		case 'U':
			if id, err := strconv.ParseUint(item[1:], 10, 64); err == nil {
				s.emit(cache.Change{UserID: id})
			}
		case 's':
			var h [32]byte
			if b, err := hex.DecodeString(item[1:]); err == nil && len(b) == 32 {
				copy(h[:], b)
				s.emit(cache.Change{Session: h})
			}
		case '*':
			s.users.Purge()
			s.emit(cache.Change{All: true})
		}
	}
}

// listen runs the change feed until stop: LISTEN on a connection of its
// own, wait for notifications, ping while idle; on any failure drop every
// cached entry and connect again.
func (s *Store) listen(ready chan<- struct{}) {
	backoff := 100 * time.Millisecond
	for {
		err := s.listenOnce(ready)
		ready = nil
		select {
		case <-s.stop:
			return
		default:
		}
		s.flushAll()
		s.log.Warn("store change feed interrupted; cache dropped, reconnecting", "err", err)
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (s *Store) listenOnce(ready chan<- struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // Close ends the wait below at once.
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(cctx, s.connCfg.Copy())
	ccancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+changesChannel); err != nil {
		return err
	}
	// Whatever was cached before this feed began may be stale.
	s.flushAll()
	s.heard.Store(time.Now().UnixNano())
	if ready != nil {
		close(ready)
	}
	for {
		wctx, wcancel := context.WithTimeout(ctx, listenWait)
		n, err := conn.WaitForNotification(wctx)
		wcancel()
		switch {
		case err == nil:
			s.heard.Store(time.Now().UnixNano())
			s.apply(n.Payload)
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !pgconn.Timeout(err):
			return err
		}
		pctx, pcancel := context.WithTimeout(ctx, pingTimeout)
		err = conn.Ping(pctx)
		pcancel()
		if err != nil {
			return err
		}
		s.heard.Store(time.Now().UnixNano())
	}
}

// cachedUser returns a user from the LRU while the feed is fresh.
func (s *Store) cachedUser(id uint64) (account.User, bool) {
	if !s.fresh() {
		return account.User{}, false
	}
	u, ok := s.users.Get(id)
	return u, ok
}

// fillUser caches u unless a change was heard since gen0 (taken before
// the read), so a record read before its invalidation is never kept.
func (s *Store) fillUser(gen0 uint64, u account.User) {
	if s.gen.Load() == gen0 && s.fresh() {
		s.users.Add(u.ID, u)
	}
}

// note records a change for the transaction's NOTIFY.
func (tx *Tx) note(kind byte, id uint64) {
	tx.notes = append(tx.notes, string(kind)+strconv.FormatUint(id, 10))
}

func (tx *Tx) noteSession(h []byte) {
	tx.notes = append(tx.notes, "s"+hex.EncodeToString(h))
}

// notify sends the transaction's notes; PostgreSQL delivers them at
// commit, to every listener, or not at all.
func (tx *Tx) notify() error {
	if len(tx.notes) == 0 {
		return nil
	}
	var b strings.Builder
	send := func() error {
		if b.Len() == 0 {
			return nil
		}
		_, err := tx.exec(`SELECT pg_notify($1, $2)`, changesChannel, b.String())
		b.Reset()
		return err
	}
	for _, n := range tx.notes {
		if b.Len()+len(n)+1 > notifyMax {
			if err := send(); err != nil {
				return err
			}
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
	}
	return send()
}

// unavailable marks errors that mean PostgreSQL could not be reached (or
// went away mid-statement) with cache.ErrUnavailable, for the 503s of
// SPEC §12.
func unavailable(err error) error {
	if err == nil || errors.Is(err, cache.ErrUnavailable) {
		return err
	}
	var (
		ce *pgconn.ConnectError
		ne net.Error
		pe *pgconn.PgError
	)
	switch {
	case errors.As(err, &pe):
		// The server answered; only "going away / not now" is unavailability.
		if strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" {
			return fmt.Errorf("%w: %w", cache.ErrUnavailable, err)
		}
		return err
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		pgconn.SafeToRetry(err), pgconn.Timeout(err), strings.Contains(err.Error(), "conn closed"):
		return fmt.Errorf("%w: %w", cache.ErrUnavailable, err)
	}
	return err
}

var _ cache.Watcher = (*Store)(nil)

// watchState is the part of Store the change feed uses.
type watchState struct {
	watchMu   sync.Mutex
	watchers  []func(cache.Change)
	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}
