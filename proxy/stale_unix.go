//go:build unix

package proxy

import (
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether the upstream closed (or wrote to) an idle
// keep-alive connection, with one non-blocking peek and no deadline
// changes. Unsolicited bytes on an idle HTTP/1.1 connection (a TLS
// close_notify, junk) make it as unusable as a FIN.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EINTR):
		case rerr != nil, n >= 0:
			closed = true
		}
		return true // never wait for readiness: this is a probe
	})
	return closed || err != nil
}
