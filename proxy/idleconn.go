package proxy

import (
	"net"
	"time"
)

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
	rArmed  time.Time
	wArmed  time.Time
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	return &idleConn{Conn: c, timeout: timeout, slack: min(time.Second, timeout/8)}
}

func (c *idleConn) Read(b []byte) (int, error) {
	if now := time.Now(); now.Sub(c.rArmed) > c.slack {
		if err := c.Conn.SetReadDeadline(now.Add(c.timeout)); err != nil {
			return 0, err
		}
		c.rArmed = now
	}
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	if now := time.Now(); now.Sub(c.wArmed) > c.slack {
		if err := c.Conn.SetWriteDeadline(now.Add(c.timeout)); err != nil {
			return 0, err
		}
		c.wArmed = now
	}
	return c.Conn.Write(b)
}

// SetReadDeadline and SetWriteDeadline from HostClient are ignored: it only
// sets them when its own (total) timeouts are configured, and they are
// not; the idle deadlines above are the ones that hold.
func (c *idleConn) SetReadDeadline(time.Time) error  { return nil }
func (c *idleConn) SetWriteDeadline(time.Time) error { return nil }
func (c *idleConn) SetDeadline(time.Time) error      { return nil }
