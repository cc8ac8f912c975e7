package auth

import (
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// limiterSize bounds how many names and addresses are tracked: an attacker
// spraying random names evicts the oldest windows instead of growing memory.
const limiterSize = 100_000

// limiter counts failed logins per name and per client address in a
// sliding window (SPEC §5). Each window keeps at most max timestamps: once
// full, the oldest kept one says when the next attempt is allowed.
type limiter struct {
	mu     sync.Mutex
	byName *lru.Cache[string, *failures]
	byAddr *lru.Cache[netip.Addr, *failures]
}

type failures struct{ at []time.Time }

func newLimiter() *limiter {
	n, _ := lru.New[string, *failures](limiterSize)
	a, _ := lru.New[netip.Addr, *failures](limiterSize)
	return &limiter{byName: n, byAddr: a}
}

// prune drops failures older than window and returns the count left.
func (f *failures) prune(now time.Time, window time.Duration) int {
	i := 0
	for i < len(f.at) && now.Sub(f.at[i]) >= window {
		i++
	}
	if i > 0 {
		f.at = append(f.at[:0], f.at[i:]...)
	}
	return len(f.at)
}

func (f *failures) retryAfter(now time.Time, window time.Duration, max int) (time.Duration, bool) {
	if f == nil || max <= 0 || f.prune(now, window) < max {
		return 0, false
	}
	// The max-th most recent failure must leave the window.
	d := f.at[len(f.at)-max].Add(window).Sub(now)
	if d < time.Second {
		d = time.Second
	}
	return d, true
}

// check returns a *RateLimitedError if name or addr is over its limit.
func (l *limiter) check(name string, addr netip.Addr, now time.Time, st *settings) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.byName.Peek(name); ok {
		if d, over := f.retryAfter(now, st.window, st.maxFailures); over {
			return &RateLimitedError{RetryAfter: d}
		}
	}
	if f, ok := l.byAddr.Peek(addr); ok {
		if d, over := f.retryAfter(now, st.window, st.maxFailuresPerAddr); over {
			return &RateLimitedError{RetryAfter: d, PerAddress: true}
		}
	}
	return nil
}

// fail counts one failed login for name and addr.
func (l *limiter) fail(name string, addr netip.Addr, now time.Time, st *settings) {
	l.mu.Lock()
	defer l.mu.Unlock()
	add := func(f *failures, max int) {
		f.prune(now, st.window)
		f.at = append(f.at, now)
		if over := len(f.at) - max; max > 0 && over > 0 {
			f.at = append(f.at[:0], f.at[over:]...)
		}
	}
	f, ok := l.byName.Get(name)
	if !ok {
		f = &failures{}
		l.byName.Add(name, f)
	}
	add(f, st.maxFailures)
	g, ok := l.byAddr.Get(addr)
	if !ok {
		g = &failures{}
		l.byAddr.Add(addr, g)
	}
	add(g, st.maxFailuresPerAddr)
}

// reset forgets the name's failures after a successful login. The
// address's are kept: one right password must not unlock guessing others.
func (l *limiter) reset(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byName.Remove(name)
}
