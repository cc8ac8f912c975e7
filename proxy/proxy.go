// Package proxy forwards authenticated requests to the platform (SPEC §6):
// it strips every client copy of the identity headers, sets them from the
// session's user, sets X-Forwarded-For/Proto/Host, keeps the session cookie
// to itself, drops hop-by-hop headers in both directions, streams bodies
// both ways with bounded memory and tunnels WebSocket upgrades.
//
// Forward mutates ctx.Request in place and hands it to a pooled
// fasthttp.HostClient that writes the response straight into ctx.Response,
// so a proxied request copies no header or body: the upstream's body stream
// becomes the response's body stream and the server closes it (returning
// the upstream connection to the pool) once it is sent. The server running
// Forward must set StreamRequestBody and DisablePreParseMultipartForm, or
// uploads are read into memory first.
package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/metrics"
)

// Defaults applied by New.
const (
	DefaultTimeout         = 60 * time.Second
	DefaultDialTimeout     = 5 * time.Second
	DefaultMaxConnsPerHost = 512
	// defaultMaxIdleConn stays below the keep-alive timeout of common
	// upstream servers (Node's is 5s): a pooled connection the upstream
	// closes first fails the next request on it, and requests with a body
	// cannot be retried.
	defaultMaxIdleConn = 4 * time.Second
	// maxUpgradeErrorBody bounds the body of a refused WebSocket upgrade,
	// which is buffered before it is relayed.
	maxUpgradeErrorBody = 1 << 20
	// maxStaleRetries bounds how many stale pooled connections one request
	// may run into before the error is the answer.
	maxStaleRetries = 8
	// maxBufferedBody: an upstream body announced at this size or below is
	// read whole before the answer goes out (see bufferSmallBody); larger
	// or unknown-length bodies stream. Small enough that 512 connections'
	// worth stays a few MiB.
	maxBufferedBody = 8 << 10
)

// Default identity header names (SPEC §6).
const (
	DefaultUserHeader   = "X-Forwarded-User"
	DefaultEmailHeader  = "X-Forwarded-Email"
	DefaultRoleHeader   = "X-Forwarded-Role"
	DefaultGroupsHeader = "X-Forwarded-Groups"
)

// Error codes of the JSON answers (SPEC §5 error shape).
const (
	CodeUpstreamUnavailable = "upstream_unavailable"
	CodeUpstreamTimeout     = "upstream_timeout"
)

// ErrBadUpstream is returned by New for an upstream URL it cannot use.
var ErrBadUpstream = errors.New("proxy: bad upstream URL")

// Options configures a Proxy.
type Options struct {
	// Upstream is the platform's absolute http(s) URL; a path in it is
	// prefixed to every forwarded path.
	Upstream string
	// Headers names the identity headers; empty names take the defaults.
	Headers config.Headers
	// CookieName is the session cookie, which never travels upstream.
	CookieName string
	// TrustedProxies are the peers whose X-Forwarded-* headers are believed.
	TrustedProxies []netip.Prefix
	// Timeout bounds the wait for the upstream: to the response headers,
	// and between two reads or writes of a body, the way nginx's
	// proxy_read_timeout does. A body that keeps moving is never cut.
	// Default 60s.
	Timeout time.Duration
	// DialTimeout bounds connecting (and the TLS handshake). Default 5s, or
	// Timeout if that is shorter.
	DialTimeout time.Duration
	// MaxConnsPerHost bounds the pooled upstream connections. Default 512.
	MaxConnsPerHost int
	// RewriteHost sends the upstream's host as Host, as nginx does by
	// default. Off, the client's Host passes unchanged (as oauth2-proxy,
	// Traefik and Caddy do), so the platform builds its links with the
	// public name; X-Forwarded-Host carries it either way.
	RewriteHost bool
	// TLSConfig is used for https upstreams; nil means the system roots.
	TLSConfig *tls.Config
}

// Proxy forwards requests to one upstream. It is safe for concurrent use.
type Proxy struct {
	log *slog.Logger
	m   *metrics.Metrics

	client      *fasthttp.HostClient
	timeout     time.Duration
	dialTimeout time.Duration

	// base is scheme://host[:port] plus the path prefix without its
	// trailing slash; a request's raw URI is appended to it.
	base        []byte
	prefix      []byte
	addr        string // host:port dialed
	host        []byte // Host header value when RewriteHost
	https       bool
	tlsConfig   *tls.Config
	rewriteHost bool

	// wsTLS is tlsConfig for WebSocket upgrades, which dial on their own:
	// it offers only HTTP/1.1 in ALPN (an upgrade needs it; h2 has no
	// Upgrade). Built once in New rather than cloned per upgrade.
	wsTLS *tls.Config

	names      identityNames
	table      []headerRule
	cookieName []byte
	trusted    []netip.Prefix

	scratch sync.Pool

	mu      sync.Mutex
	tunnels map[*tunnel]struct{}
	closed  bool
	// conns are the open upstream connections, busy or idle: Cut closes
	// them when a shutdown has waited long enough for their requests.
	conns map[*idleConn]struct{}
	cut   bool
}

// identityNames are the canonical identity header names, predeclared so a
// request allocates none.
type identityNames struct {
	user, email, role, groups []byte
}

// New validates o and returns a Proxy. log must not be nil; m may be nil.
func New(o Options, log *slog.Logger, m *metrics.Metrics) (*Proxy, error) {
	u, err := url.Parse(o.Upstream)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrBadUpstream, o.Upstream, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w %q: want http(s)://host[:port][/prefix]", ErrBadUpstream, o.Upstream)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%w %q: no query, fragment or user info allowed", ErrBadUpstream, o.Upstream)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		log:         log.With("component", "proxy"),
		m:           m,
		timeout:     o.Timeout,
		dialTimeout: o.DialTimeout,
		https:       u.Scheme == "https",
		rewriteHost: o.RewriteHost,
		cookieName:  []byte(o.CookieName),
		trusted:     o.TrustedProxies,
		tunnels:     make(map[*tunnel]struct{}),
		conns:       make(map[*idleConn]struct{}),
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	if p.dialTimeout <= 0 {
		p.dialTimeout = min(DefaultDialTimeout, p.timeout)
	}
	p.addr = u.Host
	if u.Port() == "" {
		if p.https {
			p.addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			p.addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	p.host = []byte(u.Host)
	// EscapedPath keeps the prefix as written (%2F stays encoded).
	prefix := strings.TrimRight(u.EscapedPath(), "/")
	p.prefix = []byte(prefix)
	p.base = []byte(u.Scheme + "://" + u.Host + prefix)

	p.tlsConfig = o.TLSConfig
	if p.tlsConfig == nil {
		p.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		p.tlsConfig = p.tlsConfig.Clone()
	}
	if p.tlsConfig.ServerName == "" {
		p.tlsConfig.ServerName = u.Hostname()
	}
	p.wsTLS = p.tlsConfig.Clone()
	p.wsTLS.NextProtos = []string{"http/1.1"}

	h := o.Headers
	p.names = identityNames{
		user:   canonicalName(h.User, DefaultUserHeader),
		email:  canonicalName(h.Email, DefaultEmailHeader),
		role:   canonicalName(h.Role, DefaultRoleHeader),
		groups: canonicalName(h.Groups, DefaultGroupsHeader),
	}
	p.table = buildTable(p.names)

	maxConns := o.MaxConnsPerHost
	if maxConns <= 0 {
		maxConns = DefaultMaxConnsPerHost
	}
	p.client = &fasthttp.HostClient{
		Addr:      p.addr,
		IsTLS:     p.https,
		TLSConfig: p.tlsConfig,
		Dial:      p.dial,
		MaxConns:  maxConns,
		// Wait for a pooled connection rather than failing at once when
		// all are busy.
		MaxConnWaitTimeout:  p.timeout,
		MaxIdleConnDuration: defaultMaxIdleConn,
		// The most recently used connection goes out first: its buffers
		// are warm, taking it is O(1) (FIFO shifts the whole idle list on
		// every request), it is never old enough for the stale probe, and
		// connections a quieter period no longer needs age out instead of
		// being kept alive in rotation.
		ConnPoolStrategy: fasthttp.LIFO,
		// Only there to make HostClient call SetWriteDeadline before each
		// request, where idleConn probes for a stale connection; the
		// deadline itself is ignored (idleConn keeps idle deadlines).
		WriteTimeout: p.timeout,
		// Bodies stream: the upstream's response body is never buffered.
		StreamResponseBody: true,
		// The raw path goes upstream as the client wrote it (%2F stays).
		DisablePathNormalizing:   true,
		NoDefaultUserAgentHeader: true,
		// Response header names reach the client as the upstream spelled
		// them, and are not rewritten on the way.
		DisableHeaderNamesNormalizing: true,
		// A stale keep-alive connection is retried once for idempotent
		// requests; a timeout is not (it would only double the wait).
		MaxIdemponentCallAttempts: 2,
		RetryIfErr:                retryIfErr,
	}
	p.scratch.New = func() any { return new(scratch) }
	return p, nil
}

// dial connects to the upstream and wraps the connection so each read and
// write gets the idle deadline; HostClient's own timeouts are totals, which
// would cut long downloads.
func (p *Proxy) dial(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: p.dialTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	ic := newIdleConn(c, p.timeout)
	ic.onClose = p.forget
	p.mu.Lock()
	cut := p.cut
	if !cut {
		p.conns[ic] = struct{}{}
	}
	p.mu.Unlock()
	if cut {
		c.Close()
		return nil, errProxyClosed
	}
	return ic, nil
}

func (p *Proxy) forget(c *idleConn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Cut closes every upstream connection and WebSocket tunnel, busy ones
// included: the requests on them end at once with an upstream error. It is
// what a shutdown does once its drain bound has passed, so that one hung
// upstream request cannot hold the process beyond it. From then on the
// proxy dials no more: a cut GET would otherwise be retried on a new
// connection and hang again.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := slices.Collect(maps.Keys(p.conns))
	ts := slices.Collect(maps.Keys(p.tunnels))
	p.mu.Unlock()
	for _, t := range ts {
		t.close()
	}
	for _, c := range conns {
		// The socket itself: HostClient owns the idleConn and closes it
		// (and so forgets it) when its request fails.
		c.Conn.Close()
	}
}

func retryIfErr(req *fasthttp.Request, attempts int, err error) (bool, bool) {
	if isTimeout(err) {
		return false, false
	}
	return false, req.Header.IsGet() || req.Header.IsHead() || req.Header.IsPut() || req.Header.IsOptions()
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Forward proxies ctx's request upstream. u is the authenticated user, or nil
// on a public path (identity headers are then stripped and none is set).
// Forward owns ctx.Response: anything set on it before is replaced.
func (p *Proxy) Forward(ctx *fasthttp.RequestCtx, u *account.User) {
	if isWebSocketUpgrade(&ctx.Request.Header) {
		p.forwardWebSocket(ctx, u)
		return
	}
	s := p.getScratch()
	defer p.scratch.Put(s)

	req := &ctx.Request
	clientClose := req.Header.ConnectionClose()
	p.prepare(ctx, u, s, false)
	s.uri = append(append(s.uri[:0], p.base...), requestPath(ctx)...)
	req.SetRequestURIBytes(s.uri)
	req.UseHostHeader = !p.rewriteHost

	start := monoNow()
	err := p.client.Do(req, &ctx.Response)
	// A connection found closed before anything was sent: try another
	// (several may have gone stale together, e.g. an upstream restart).
	for i := 0; i < maxStaleRetries && errors.Is(err, errStaleConn); i++ {
		err = p.client.Do(req, &ctx.Response)
	}
	if err == nil {
		err = bufferSmallBody(&ctx.Response, s)
	}
	if p.m != nil {
		p.m.UpstreamDuration.Observe((monoNow() - start).Seconds())
	}
	if err != nil {
		p.upstreamError(ctx, err)
		return
	}
	p.cleanResponse(&ctx.Response.Header, s)
	if clientClose {
		ctx.Response.SetConnectionClose()
	}
}

// bufferSmallBody reads a body of known, small length into resp and
// closes the stream, which hands the upstream connection back to the pool
// at once instead of after the client has been written to. The server then
// writes header and body with one copy into its buffer, where a stream costs
// a copy buffer, a pass through the stream's locks and a close callback per
// request. Memory stays bounded by maxBufferedBody per request.
//
// A body that ends early or stalls past the timeout becomes a 502/504
// answer: nothing has reached the client yet.
func bufferSmallBody(resp *fasthttp.Response, s *scratch) error {
	n := resp.Header.ContentLength()
	if n < 0 || n > maxBufferedBody || !resp.IsBodyStream() {
		return nil
	}
	r, ok := resp.BodyStream().(fasthttp.ReadCloserWithError)
	if !ok {
		return nil
	}
	if cap(s.body) < n {
		s.body = make([]byte, 0, maxBufferedBody)
	}
	b := s.body[:n]
	got, err := readBody(r, b)
	if err != nil {
		// The connection is in an unknown state: CloseWithError drops it
		// instead of pooling it.
		_ = r.CloseWithError(err)
		resp.ResetBody()
		return fmt.Errorf("read upstream body (%d of %d bytes): %w", got, n, err)
	}
	// The stream has reached its end: SetBody closes it, and the
	// connection goes back to the pool.
	resp.SetBody(b)
	return nil
}

// readBody fills b from r and reads on to r's io.EOF, which a fasthttp
// body stream returns with or right after its last byte: only a stream
// read to io.EOF returns its connection to the pool.
func readBody(r io.Reader, b []byte) (int, error) {
	got := 0
	for {
		n, err := r.Read(b[got:])
		got += n
		switch {
		case err == io.EOF && got == len(b):
			return got, nil
		case err == io.EOF:
			return got, io.ErrUnexpectedEOF
		case err != nil:
			return got, err
		case n == 0 && got == len(b):
			// Full, and the stream did not say EOF on an empty read:
			// it holds more than it announced.
			return got, errBodyTooLong
		}
	}
}

// errBodyTooLong: the upstream sent more body than its Content-Length.
var errBodyTooLong = errors.New("proxy: upstream body longer than its Content-Length")

// upstreamError answers 502 or 504 in the SPEC's error shape.
func (p *Proxy) upstreamError(ctx *fasthttp.RequestCtx, err error) {
	status, code, msg := fasthttp.StatusBadGateway, CodeUpstreamUnavailable, "the upstream is unavailable"
	if isTimeout(err) {
		status, code, msg = fasthttp.StatusGatewayTimeout, CodeUpstreamTimeout, "the upstream did not answer in time"
	}
	p.log.Warn("upstream request failed",
		"method", string(ctx.Method()), "path", string(ctx.Path()),
		"status", status, "err", err)
	// The client's body may be half read: the connection cannot carry
	// another request.
	if ctx.Request.IsBodyStream() {
		ctx.SetConnectionClose()
	}
	WriteError(ctx, status, code, msg)
}

// WriteError answers {"error":{"code":...,"msg":...}} with status. msg and
// code must be plain JSON-safe text (no quotes or backslashes).
func WriteError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"error":{"code":"` + code + `","msg":"` + msg + `"}}`)
}

// requestPath is the raw request-target as the client sent it, in origin
// form. The parsed URI is not used: it decodes %2F and collapses dots, and
// the platform must see the path the client wrote.
func requestPath(ctx *fasthttp.RequestCtx) []byte {
	raw := ctx.Request.Header.RequestURI()
	if len(raw) > 0 && raw[0] == '/' {
		return raw
	}
	// Absolute form (GET http://host/p HTTP/1.1): fasthttp keeps the
	// original path; the query follows.
	uri := ctx.URI()
	uri.DisablePathNormalizing = true
	return uri.RequestURI()
}

// Close ends live WebSocket tunnels and closes idle upstream connections.
// Forward must not be called after Close.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	ts := slices.Collect(maps.Keys(p.tunnels))
	p.mu.Unlock()
	for _, t := range ts {
		t.close()
	}
	p.client.CloseIdleConnections()
	return nil
}

func (p *Proxy) getScratch() *scratch {
	return p.scratch.Get().(*scratch) //nolint:forcetypeassert // the pool holds only *scratch
}
