//go:build !unix

package proxy

import "net"

// peerClosed cannot probe without blocking here; a stale connection then
// surfaces as an upstream error on requests with a body.
func peerClosed(net.Conn) bool { return false }
