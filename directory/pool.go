package directory

import (
	"context"
	"sync"
)

// pool bounds the service-account connections of one directory.
//
// Kept deliberately small (Authelia's pool once deadlocked under load): a
// buffered channel of size N is the only thing anyone waits on, the mutex is
// held only to push/pop the idle list and flip closed, and no connection is
// dialed or closed while it is held. Holding a token in slots means owning
// one connection (idle or in use), so there are never more than N.
type pool struct {
	slots  chan struct{}
	done   chan struct{} // closed by close(): wakes every waiting acquire
	dialFn func(ctx context.Context) (*conn, error)

	mu     sync.Mutex
	idle   []*conn
	closed bool
}

func newPool(size int, dial func(ctx context.Context) (*conn, error)) *pool {
	return &pool{
		slots:  make(chan struct{}, size),
		done:   make(chan struct{}),
		dialFn: dial,
	}
}

// acquire returns a bound connection, waiting for a free slot until ctx
// ends. reused says the connection came from the idle list (so a failure on
// it may only mean it went stale while idle).
func (p *pool) acquire(ctx context.Context) (c *conn, reused bool, err error) {
	select {
	case <-p.done:
		return nil, false, ErrClosed
	default:
	}
	select {
	case p.slots <- struct{}{}:
	case <-p.done:
		return nil, false, ErrClosed
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.slots
		return nil, false, ErrClosed
	}
	if n := len(p.idle); n > 0 {
		c = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
	}
	p.mu.Unlock()

	// A connection the server closed while idle (idle timeout, restart) has
	// its reader stopped and IsClosing set: replace it before use.
	if c != nil && c.IsClosing() {
		_ = c.Close()
		c = nil
	}
	if c != nil {
		return c, true, nil
	}
	c, err = p.dialFn(ctx)
	if err != nil {
		<-p.slots
		return nil, false, err
	}
	return c, false, nil
}

// release gives c back. A broken connection, or any connection after close,
// is closed instead of kept.
func (p *pool) release(c *conn, healthy bool) {
	keep := false
	if healthy && !c.IsClosing() {
		p.mu.Lock()
		if !p.closed {
			p.idle = append(p.idle, c)
			keep = true
		}
		p.mu.Unlock()
	}
	if !keep {
		_ = c.Close()
	}
	<-p.slots
}

// close closes the idle connections and fails every later or waiting
// acquire; connections in use are closed when released. Idempotent.
func (p *pool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.unbindClose()
	}
}
