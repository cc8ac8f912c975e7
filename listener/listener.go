// Package listener wraps the TCP listeners of ldapgate's two servers so that
// neither a client nor a shortage of descriptors can end them (SPEC §8, §11).
//
// fasthttp's Serve returns on the first accept error that is not a timeout,
// and EMFILE ("too many open files") is one: a few hundred idle connections
// from one client used to stop the whole process. Here an accept error is
// counted, logged (rate-limited) and retried with back-off; the connections
// the kernel queued meanwhile wait and are served once descriptors free up.
// Open connections are bounded per listener (past MaxConns the next accept
// waits for one to close) and per client address (past MaxConnsPerIP the new
// connection is closed at once), so one address cannot use up the rest.
package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapgate/ldapgate/metrics"
)

// Limits bound a listener's open connections; 0 means no bound.
type Limits struct {
	MaxConns      int
	MaxConnsPerIP int
}

// Back-off between failed accepts: net/http's figures. Short enough that a
// freed descriptor is used at once, long enough not to spin on EMFILE.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// logEvery rate-limits the log lines of one kind per listener; the counts
// in between are reported with the next line and in the metrics.
const logEvery = 10 * time.Second

// Listener is a net.Listener whose Accept only returns an error once the
// listener is closed.
type Listener struct {
	inner net.Listener
	name  string
	lim   Limits
	log   *slog.Logger

	slots     chan struct{} // one token per open connection; nil: no MaxConns
	closed    chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	perIP map[netip.Addr]int // open connections by ipKey

	logMu   sync.Mutex
	lastLog map[string]time.Time
	unseen  map[string]int // events since the last line of their kind

	acceptErrors *prometheus.CounterVec // reason
	limited      *prometheus.CounterVec // limit
	open         prometheus.Gauge
}

// Wrap returns ln with lim applied, reporting as listener name (listen,
// metrics_listen) to log and m.
func Wrap(ln net.Listener, name string, lim Limits, log *slog.Logger, m *metrics.Metrics) *Listener {
	l := &Listener{
		inner: ln, name: name, lim: lim, log: log,
		closed: make(chan struct{}), perIP: map[netip.Addr]int{},
		lastLog: map[string]time.Time{}, unseen: map[string]int{},
		acceptErrors: m.ListenerAcceptErrors.MustCurryWith(prometheus.Labels{"listener": name}),
		limited:      m.ListenerLimited.MustCurryWith(prometheus.Labels{"listener": name}),
		open:         m.ListenerConnections.WithLabelValues(name),
	}
	if lim.MaxConns > 0 {
		l.slots = make(chan struct{}, lim.MaxConns)
	}
	return l
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops accepting; open connections stay (the servers close them).
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.inner.Close()
	})
	return err
}

// Accept waits for a free slot, then for a connection from an address under
// its limit. Errors other than the listener being closed are never returned.
func (l *Listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	failed := 0
	for {
		if err := l.takeSlot(); err != nil {
			return nil, err
		}
		c, err := l.inner.Accept()
		if err != nil {
			l.releaseSlot()
			select {
			case <-l.closed:
				return nil, net.ErrClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			reason := classify(err)
			l.acceptErrors.WithLabelValues(reason).Inc()
			failed++
			l.note("accept failed; retrying", reason, "err", err.Error())
			if reason == reasonAborted {
				// The client gave up before we took it: nothing to wait for.
				continue
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			if !l.sleep(backoff) {
				return nil, net.ErrClosed
			}
			continue
		}
		if failed > 0 {
			l.note("accepting connections again", "recovered", "failed_accepts", failed)
			failed, backoff = 0, 0
		}
		key := ipKey(c.RemoteAddr())
		if !l.admit(key) {
			// Counted and logged before the close, so that whoever sees
			// the connection end also finds the refusal recorded.
			l.limited.WithLabelValues("max_conns_per_ip").Inc()
			l.note("connection refused: too many from one address", "max_conns_per_ip",
				"client", key.String(), "max_conns_per_ip", l.lim.MaxConnsPerIP)
			_ = c.Close()
			l.releaseSlot()
			continue
		}
		l.open.Inc()
		return &conn{Conn: c, l: l, key: key}, nil
	}
}

func (l *Listener) takeSlot() error {
	if l.slots == nil {
		return nil
	}
	select {
	case l.slots <- struct{}{}:
		return nil
	default:
	}
	l.limited.WithLabelValues("max_conns").Inc()
	l.note("at max_conns; new connections wait until one closes", "max_conns", "max_conns", l.lim.MaxConns)
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-l.closed:
		return net.ErrClosed
	}
}

func (l *Listener) releaseSlot() {
	if l.slots != nil {
		<-l.slots
	}
}

// sleep waits d unless the listener closes first (false).
func (l *Listener) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.closed:
		return false
	}
}

func (l *Listener) admit(key netip.Addr) bool {
	if l.lim.MaxConnsPerIP <= 0 || !key.IsValid() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[key] >= l.lim.MaxConnsPerIP {
		return false
	}
	l.perIP[key]++
	return true
}

func (l *Listener) release(key netip.Addr) {
	if l.lim.MaxConnsPerIP > 0 && key.IsValid() {
		l.mu.Lock()
		if l.perIP[key]--; l.perIP[key] <= 0 {
			delete(l.perIP, key)
		}
		l.mu.Unlock()
	}
	l.releaseSlot()
	l.open.Dec()
}

// note logs msg at most once per logEvery for each kind, with the number of
// events of that kind since the previous line.
func (l *Listener) note(msg, kind string, args ...any) {
	l.logMu.Lock()
	l.unseen[kind]++
	now := time.Now()
	if last, ok := l.lastLog[kind]; ok && now.Sub(last) < logEvery {
		l.logMu.Unlock()
		return
	}
	n := l.unseen[kind]
	l.unseen[kind] = 0
	l.lastLog[kind] = now
	l.logMu.Unlock()
	level := slog.LevelWarn
	if kind == "recovered" {
		level = slog.LevelInfo
	}
	l.log.Log(context.Background(), level, msg, append([]any{"listener", l.name, "reason", kind, "count", n}, args...)...)
}

// Reasons of failed accepts (the metric's bounded label values).
const (
	reasonFDLimit = "fd_limit"
	reasonAborted = "aborted"
	reasonOther   = "other"
)

func classify(err error) string {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return reasonFDLimit
	case errors.Is(err, syscall.ECONNABORTED):
		return reasonAborted
	}
	return reasonOther
}

// ipKey is the address a connection is counted under: the peer's IP, or
// its /64 for IPv6, where one client commonly holds a whole /64.
func ipKey(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// conn gives its slot and address count back when closed, once.
type conn struct {
	net.Conn
	l      *Listener
	key    netip.Addr
	closed atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key)
	}
	return err
}
