package directory

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pipeConn is a connection over an in-memory pipe whose far end discards
// what it gets: enough for the pool, which only opens, checks and closes.
func pipeConn(t *testing.T) *conn {
	t.Helper()
	a, b := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, b) }()
	t.Cleanup(func() { b.Close() })
	return newConn(a, "pipe", time.Second)
}

func TestPoolBoundsAndReuse(t *testing.T) {
	var dials atomic.Int32
	p := newPool(2, func(context.Context) (*conn, error) { dials.Add(1); return pipeConn(t), nil })
	defer p.close()
	ctx := context.Background()
	c1, r1, err := p.acquire(ctx)
	if err != nil || r1 {
		t.Fatalf("acquire 1: %v reused=%v", err, r1)
	}
	c2, _, err := p.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := p.acquire(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third acquire on a full pool = %v, want DeadlineExceeded", err)
	}
	p.release(c1, true)
	c3, reused, err := p.acquire(ctx)
	if err != nil || !reused || c3 != c1 {
		t.Fatalf("acquire after release: %v reused=%v same=%v; want the idle connection", err, reused, c3 == c1)
	}
	// An unhealthy release closes the connection; the next acquire dials.
	p.release(c3, false)
	if !c3.IsClosing() {
		t.Fatal("unhealthy connection not closed")
	}
	c4, reused, err := p.acquire(ctx)
	if err != nil || reused {
		t.Fatalf("acquire after discard: %v reused=%v", err, reused)
	}
	p.release(c4, true)
	p.release(c2, true)
	if got := dials.Load(); got != 3 {
		t.Fatalf("%d dials, want 3", got)
	}
}

func TestPoolReplacesDeadIdle(t *testing.T) {
	p := newPool(1, func(context.Context) (*conn, error) { return pipeConn(t), nil })
	defer p.close()
	c, _, _ := p.acquire(context.Background())
	p.release(c, true)
	c.Close() // the server went away while it sat idle
	c2, reused, err := p.acquire(context.Background())
	if err != nil || reused || c2 == c {
		t.Fatalf("acquire = %v reused=%v same=%v; want a new connection", err, reused, c2 == c)
	}
	p.release(c2, true)
}

func TestPoolDialFailureFreesSlot(t *testing.T) {
	boom := errors.New("down")
	p := newPool(1, func(context.Context) (*conn, error) { return nil, boom })
	defer p.close()
	for range 3 { // would block on the second try if the slot leaked
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _, err := p.acquire(ctx)
		cancel()
		if !errors.Is(err, boom) {
			t.Fatalf("acquire = %v, want the dial error", err)
		}
	}
}

func TestPoolCloseWhileBusy(t *testing.T) {
	p := newPool(2, func(context.Context) (*conn, error) { return pipeConn(t), nil })
	ctx := context.Background()
	idle, _, _ := p.acquire(ctx)
	busy, _, _ := p.acquire(ctx)
	p.release(idle, true)
	busy2, _, _ := p.acquire(ctx) // takes the idle one back: pool full

	// Waiters blocked on a full pool must wake with ErrClosed.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			_, _, err := p.acquire(ctx)
			errs <- err
		})
	}
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { p.close(); p.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("close deadlocked")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter got %v, want ErrClosed", err)
		}
	}
	// Releases after close close their connection and do not block.
	p.release(busy, true)
	p.release(busy2, true)
	if !busy.IsClosing() || !busy2.IsClosing() {
		t.Fatal("connections released after close were kept open")
	}
	if _, _, err := p.acquire(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("acquire after close = %v, want ErrClosed", err)
	}
}
