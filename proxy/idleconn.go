package proxy

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// staleCheckAfter: a pooled connection idle for longer than this is probed
// before a request is written on it. Shorter idle times skip the probe (a
// syscall): an upstream that drops keep-alive connections within 100ms is
// not worth slowing every busy request for.
const staleCheckAfter = 100 * time.Millisecond

// errStaleConn says the upstream closed a pooled connection while it sat
// idle; nothing of the request was written or read, so it is safe to send
// again on another connection, body stream included.
var errStaleConn = errors.New("proxy: pooled upstream connection closed by the upstream")

// idleConn gives every Read and Write a deadline of timeout from the moment
// it starts, like nginx's proxy_read_timeout/proxy_send_timeout: a silent
// upstream is cut after timeout, a body that keeps flowing never is.
// HostClient's ReadTimeout would instead bound the whole response, body
// included, and cut a long download.
//
// Re-arming costs a timer update, so it is done at most once per slack:
// the effective timeout lies between timeout-slack and timeout.
//
// A connection is used by one request at a time (HostClient's pool), but a
// streamed body may be closed from another goroutine while a Read runs, so
// reads and writes keep separate state and never share a field.
type idleConn struct {
	net.Conn
	timeout time.Duration
	slack   time.Duration
	// Monotonic clock readings (monoNow): time.Now reads the wall clock
	// too, and these run several times per request.
	rArmed   time.Duration
	wArmed   time.Duration
	lastRead time.Duration
	// onClose, if set, is told when the connection is closed (Proxy.conns).
	onClose func(*idleConn)
	// refused: the upstream stopped taking this request's body (a write
	// failed with EPIPE or ECONNRESET). Only the request's goroutine
	// touches it (Write, then SetWriteDeadline of the next request).
	refused bool
}

func (c *idleConn) Close() error {
	if c.onClose != nil {
		c.onClose(c)
	}
	return c.Conn.Close()
}

// monoEpoch anchors monoNow; time.Since of a time with a monotonic
// reading costs one clock read where time.Now costs two.
var monoEpoch = time.Now()

// monoNow is the monotonic time since process start (strictly: since the
// package was initialised), always > 0.
func monoNow() time.Duration { return time.Since(monoEpoch) + 1 }

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	slack := min(time.Second, timeout/8)
	// Armed "long ago", so the first Read and Write set their deadline.
	return &idleConn{Conn: c, timeout: timeout, slack: slack, rArmed: -slack - 1, wArmed: -slack - 1}
}

// Read goes through the wrapped conn's Read, which tries read(2) before
// waiting and so usually gets one EAGAIN per response. Waiting first
// (syscall.RawConn.Read with a callback that declines its first call) is not
// safe: RawConn.Read clears the poller's readiness before the callback runs,
// so an answer that arrived since the last read, and was already reported by
// epoll (edge-triggered), never wakes the wait. Tried under wrk: 1.9 fewer
// reads per request, and connections stalled until their deadline.
func (c *idleConn) Read(b []byte) (int, error) {
	now := monoNow()
	if now-c.rArmed > c.slack {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
		c.rArmed = now
	}
	n, err := c.Conn.Read(b)
	c.lastRead = now
	return n, err
}

// Write drops what the upstream no longer takes: an upstream may answer
// before it has read the whole request (413 to a too-large upload) and
// close, and the write of the rest then fails. HostClient would close the
// connection on that error without reading the answer, and the client
// would get a 502 instead of the upstream's answer; with the rest of the
// request dropped it goes on and reads the answer (or, if the upstream
// sent none, fails there with a 502 as before). The rest of the client's
// body is still read and discarded first (HostClient copies it to the
// end), so the answer waits for the upload, and the client
// connection stays usable. The upstream connection is not used again:
// SetWriteDeadline refuses it.
func (c *idleConn) Write(b []byte) (int, error) {
	if c.refused {
		return len(b), nil
	}
	if now := monoNow(); now-c.wArmed > c.slack {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
		c.wArmed = now
	}
	n, err := c.Conn.Write(b)
	if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		c.refused = true
		return len(b), nil
	}
	return n, err
}

// HostClient's deadlines are ignored: they are totals, and the idle
// deadlines above are the ones that hold.
func (c *idleConn) SetReadDeadline(time.Time) error { return nil }
func (c *idleConn) SetDeadline(time.Time) error     { return nil }

// SetWriteDeadline is HostClient's first touch of a pooled connection for
// each request (New sets a WriteTimeout so that it is called), before any
// byte of the request, body stream included, is consumed. A connection the
// upstream has closed while idle fails here, and Forward sends again: the
// keep-alive race that would otherwise lose a POST whose body cannot be
// replayed.
func (c *idleConn) SetWriteDeadline(time.Time) error {
	if c.refused {
		return errStaleConn
	}
	if c.lastRead != 0 && monoNow()-c.lastRead > staleCheckAfter && peerClosed(c.Conn) {
		return errStaleConn
	}
	return nil
}
