// Command upstream is the trivial platform of benchmark (a): it answers
// every request with "ok". It is fast on purpose (fasthttp, no logging) so
// the proxies in front of it, not it, are what the benchmark measures.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to listen on (loopback only)")
	flag.Parse()
	body := []byte("ok")
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBody(body)
		},
		NoDefaultServerHeader: true,
	}
	log.Fatal(srv.ListenAndServe(*listen))
}
