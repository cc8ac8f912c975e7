package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
)

// maxUpgradeHead bounds the upstream's answer head to an upgrade request.
const maxUpgradeHead = 64 << 10

var (
	errUpgradeHeadTooLarge = errors.New("proxy: upgrade answer head too large")
	errProxyClosed         = errors.New("proxy: closed")
)

// tunnel is one live WebSocket connection pair. The hijack handler that
// creates it owns both copy loops and waits for them; Close of the Proxy
// ends it by closing both connections.
type tunnel struct {
	client, upstream net.Conn
	once             sync.Once
}

func newTunnel(client, upstream net.Conn) *tunnel {
	// fasthttp's hijacked connection ignores Close (the server closes it
	// after the handler returns); the socket under it must be closed to
	// interrupt a blocked read.
	if u, ok := client.(interface{ UnsafeConn() net.Conn }); ok {
		client = u.UnsafeConn()
	}
	return &tunnel{client: client, upstream: upstream}
}

func (t *tunnel) close() {
	t.once.Do(func() {
		_ = t.client.Close()
		_ = t.upstream.Close()
	})
}

// forwardWebSocket sends the upgrade request on a connection of its own
// (the pool's connections speak HTTP only), and when the upstream answers
// 101 hands both connections to a tunnel. Any other answer is relayed as
// a normal response: the client connection is never left as a raw pipe to
// the upstream after a refused upgrade, where its next request would
// bypass the session check.
func (p *Proxy) forwardWebSocket(ctx *fasthttp.RequestCtx, u *account.User) {
	s := p.getScratch()
	defer p.scratch.Put(s)
	h := &ctx.Request.Header
	p.prepare(ctx, u, s, true)
	s.uri = append(append(s.uri[:0], p.prefix...), requestPath(ctx)...)
	h.SetRequestURIBytes(s.uri)
	if p.rewriteHost {
		h.SetHostBytes(p.host)
	}

	start := time.Now()
	// Not ctx: fasthttp recycles the RequestCtx when the handler returns,
	// and the dial's context watcher may run later. The dial has its own
	// timeout.
	conn, br, head, err := p.upgrade(context.Background(), h.Header())
	if p.m != nil {
		p.m.UpstreamDuration.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		p.upstreamError(ctx, err)
		return
	}
	if !isSwitchingProtocols(head) {
		p.relayRefusal(ctx, conn, br, head, s)
		return
	}

	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		t := newTunnel(c, conn)
		if !p.track(t) {
			t.close()
			return
		}
		defer p.untrack(t)
		defer t.close()
		// The server's read and idle deadlines were meant for HTTP; a
		// WebSocket may stay quiet for as long as both ends like.
		_ = c.SetDeadline(time.Time{})
		_ = conn.SetDeadline(time.Time{})
		if _, err := c.Write(head); err != nil {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = io.Copy(conn, c)
			t.close()
		}()
		// br first: frames the upstream sent right after its 101 may
		// already sit in its buffer.
		_, _ = io.Copy(c, br)
		t.close()
		<-done
	})
}

// upgrade dials the upstream, writes the request head and reads the answer
// head raw, so a 101 reaches the client byte for byte.
func (p *Proxy) upgrade(ctx context.Context, reqHead []byte) (net.Conn, *bufio.Reader, []byte, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, nil, nil, errProxyClosed
	}
	conn, err := p.dialUpstream(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(p.timeout)); err != nil {
		_ = conn.Close()
		return nil, nil, nil, fmt.Errorf("proxy: set upgrade deadline: %w", err)
	}
	if _, err := conn.Write(reqHead); err != nil {
		_ = conn.Close()
		return nil, nil, nil, fmt.Errorf("proxy: write upgrade request: %w", err)
	}
	br := bufio.NewReader(conn)
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			_ = conn.Close()
			return nil, nil, nil, fmt.Errorf("proxy: read upgrade answer: %w", err)
		}
		if len(head) > maxUpgradeHead {
			_ = conn.Close()
			return nil, nil, nil, errUpgradeHeadTooLarge
		}
		if bytes.HasSuffix(head, []byte("\r\n\r\n")) || bytes.Equal(head, []byte("\r\n")) ||
			bytes.HasSuffix(head, []byte("\n\n")) {
			break
		}
	}
	return conn, br, head, nil
}

// dialUpstream connects (and for https, handshakes) within DialTimeout.
func (p *Proxy) dialUpstream(ctx context.Context) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	d := net.Dialer{}
	c, err := d.DialContext(dctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: dial upstream: %w", err)
	}
	if !p.https {
		return c, nil
	}
	tc := tls.Client(c, p.wsTLS)
	if err := tc.HandshakeContext(dctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("proxy: TLS handshake with upstream: %w", err)
	}
	return tc, nil
}

func isSwitchingProtocols(head []byte) bool {
	// "HTTP/1.1 101 ..."
	i := bytes.IndexByte(head, ' ')
	return i > 0 && len(head) >= i+4 && string(head[i+1:i+4]) == "101"
}

// relayRefusal answers the client with the upstream's non-101 answer and
// closes the upstream connection.
func (p *Proxy) relayRefusal(ctx *fasthttp.RequestCtx, conn net.Conn, br *bufio.Reader, head []byte, s *scratch) {
	defer conn.Close()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(head), br))
	if err := resp.ReadLimitBody(r, maxUpgradeErrorBody); err != nil {
		p.upstreamError(ctx, fmt.Errorf("proxy: read refused upgrade answer: %w", err))
		return
	}
	ctx.Response.Reset()
	resp.CopyTo(&ctx.Response)
	p.cleanResponse(&ctx.Response.Header, s)
	ctx.Response.SetConnectionClose()
}

func (p *Proxy) track(t *tunnel) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.tunnels[t] = struct{}{}
	return true
}

func (p *Proxy) untrack(t *tunnel) {
	p.mu.Lock()
	delete(p.tunnels, t)
	p.mu.Unlock()
}

// Tunnels reports the number of live WebSocket tunnels.
func (p *Proxy) Tunnels() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tunnels)
}
