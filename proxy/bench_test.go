package proxy

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkPrepare measures the header work Forward does per request (the
// strip pass, X-Forwarded-*, identity, cookie rewrite, URI) on a
// browser-like request; it must not allocate.
func BenchmarkPrepare(b *testing.B) {
	p, err := New(Options{Upstream: "http://127.0.0.1:3000/app", CookieName: testCookie}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	raw := "GET /console/vm/1?tab=net HTTP/1.1\r\nHost: app.example\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n" +
		"Cookie: ldapgate_session=0123456789abcdef0123456789abcdef; theme=dark; lang=en\r\n\r\n"
	addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5555}
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	ctx.Init(&req, addr, nil)
	sr := strings.NewReader(raw)
	br := bufio.NewReaderSize(sr, 4096)
	s := p.getScratch()
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(raw)
		br.Reset(sr)
		ctx.Request.Reset()
		if err := ctx.Request.Read(br); err != nil {
			b.Fatal(err)
		}
		p.prepare(&ctx, alice, s, false)
		s.uri = append(append(s.uri[:0], p.base...), requestPath(&ctx)...)
		ctx.Request.SetRequestURIBytes(s.uri)
	}
}
