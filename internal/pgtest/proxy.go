package pgtest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// CutProxy forwards TCP to PostgreSQL until Cut: then every connection
// through it ends and new ones are refused, as when the server is gone;
// Restore listens again on the same address. Tests of "PostgreSQL is
// unreachable" use it instead of stopping the cluster other tests share.
type CutProxy struct {
	t      testing.TB
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

// NewCutProxy forwards a new loopback address to target (host:port).
func NewCutProxy(t testing.TB, target string) *CutProxy {
	p := &CutProxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.Cut)
	return p
}

// Addr is the proxy's host:port.
func (p *CutProxy) Addr() string { return p.addr }

// Restore accepts connections again.
func (p *CutProxy) Restore() { p.listen(p.addr) }

func (p *CutProxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // cut meanwhile
				p.mu.Unlock()
				c.Close()
				up.Close()
				return
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// Cut closes the listener and every forwarded connection.
func (p *CutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
