package auth

import (
	"net/netip"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// limiterSize bounds how many pairs, addresses and names are tracked (each
// kind apart): an attacker spraying random names or addresses evicts the
// oldest windows instead of growing memory.
const limiterSize = 100_000

// The slow-down of a name failing from many addresses (SPEC §5): each
// failure past login.max_failures_per_user in the window adds nameDelayStep
// to every further attempt for the name, up to maxNameDelay.
const (
	nameDelayStep = 100 * time.Millisecond
	maxNameDelay  = 2 * time.Second
)

// limiter counts failed logins (SPEC §5) in three ways:
//
//   - per (name, address) pair and per address: a sliding window keeping
//     at most max timestamps; once full, the oldest kept one says when the
//     next attempt is allowed (429 until then).
//   - per name, from every address: never a refusal, only a delay. A limit
//     a stranger can fill must not refuse the owner, or anyone could lock
//     anyone out; slowing the name down still makes a spread-out guessing
//     attack slow.
//
// Addresses are counted per addrKey (IPv6 per /64).
type limiter struct {
	mu     sync.Mutex
	byPair *lru.Cache[pairKey, *failures]
	byAddr *lru.Cache[netip.Addr, *failures]
	byName *lru.Cache[string, *nameCount]
}

type pairKey struct {
	name string
	addr netip.Addr
}

// addrKey is the unit a client address is counted in: IPv4 addresses one
// by one (IPv4-mapped IPv6 as IPv4), IPv6 per /64. A single host is
// routinely given a whole /64 and may pick any address in it, so counting
// IPv6 addresses one by one would give it 2^64 fresh budgets.
func addrKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

type failures struct{ at []time.Time }

func newLimiter() *limiter {
	p, _ := lru.New[pairKey, *failures](limiterSize)
	a, _ := lru.New[netip.Addr, *failures](limiterSize)
	n, _ := lru.New[string, *nameCount](limiterSize)
	return &limiter{byPair: p, byAddr: a, byName: n}
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

func (f *failures) add(now time.Time, window time.Duration, max int) {
	f.prune(now, window)
	f.at = append(f.at, now)
	if over := len(f.at) - max; max > 0 && over > 0 {
		f.at = append(f.at[:0], f.at[over:]...)
	}
}

// nameCount estimates a name's failures over the last window from two
// fixed buckets, the current one and the one before it weighted by how
// much of it the window still covers. Constant memory per name however
// many failures an attack sends (a timestamp list like the pair's would
// have to keep them all to know how far over the limit it is).
type nameCount struct {
	start     time.Time // when cur began
	cur, prev uint32
}

func (c *nameCount) roll(now time.Time, window time.Duration) {
	switch d := now.Sub(c.start); {
	case d < window:
	case d < 2*window:
		c.prev, c.cur, c.start = c.cur, 0, c.start.Add(window)
	default:
		c.prev, c.cur, c.start = 0, 0, now
	}
}

func (c *nameCount) estimate(now time.Time, window time.Duration) float64 {
	c.roll(now, window)
	frac := float64(now.Sub(c.start)) / float64(window)
	frac = min(max(frac, 0), 1)
	return float64(c.prev)*(1-frac) + float64(c.cur)
}

// nameDelay is how long an attempt for a name waits: nothing below max
// failures, then one step per failure from max on, at most maxNameDelay.
func nameDelay(est float64, max int) time.Duration {
	if max <= 0 || est < float64(max) {
		return 0
	}
	over := int64(est) - int64(max) + 1
	if over >= int64(maxNameDelay/nameDelayStep) {
		return maxNameDelay
	}
	return time.Duration(over) * nameDelayStep
}

// check returns a *RateLimitedError if the pair or the address is over its
// limit, else how long the attempt must wait before its password is
// checked (the name's slow-down, usually 0). It only reads the counts:
// the wait happens in the caller, with no lock held.
func (l *limiter) check(name string, addr netip.Addr, now time.Time, st *settings) (time.Duration, error) {
	addr = addrKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.byPair.Peek(pairKey{name, addr}); ok {
		if d, over := f.retryAfter(now, st.window, st.maxFailures); over {
			return 0, &RateLimitedError{RetryAfter: d}
		}
	}
	if f, ok := l.byAddr.Peek(addr); ok {
		if d, over := f.retryAfter(now, st.window, st.maxFailuresPerAddr); over {
			return 0, &RateLimitedError{RetryAfter: d, PerAddress: true}
		}
	}
	if c, ok := l.byName.Peek(name); ok {
		return nameDelay(c.estimate(now, st.window), st.maxFailuresPerUser), nil
	}
	return 0, nil
}

// fail counts one failed login of name from addr.
func (l *limiter) fail(name string, addr netip.Addr, now time.Time, st *settings) {
	addr = addrKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	pk := pairKey{name, addr}
	f, ok := l.byPair.Get(pk)
	if !ok {
		f = &failures{}
		l.byPair.Add(pk, f)
	}
	f.add(now, st.window, st.maxFailures)
	g, ok := l.byAddr.Get(addr)
	if !ok {
		g = &failures{}
		l.byAddr.Add(addr, g)
	}
	g.add(now, st.window, st.maxFailuresPerAddr)
	c, ok := l.byName.Get(name)
	if !ok {
		c = &nameCount{start: now}
		l.byName.Add(name, c)
	}
	c.roll(now, st.window)
	if c.cur < 1<<31 {
		c.cur++
	}
}

// reset forgets the pair's failures after a successful login. The
// address's are kept (one right password must not unlock guessing other
// names), and so are the name's (they are mostly other addresses' doing:
// the owner logging in does not stop an attack on the name).
func (l *limiter) reset(name string, addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byPair.Remove(pairKey{name, addrKey(addr)})
}
