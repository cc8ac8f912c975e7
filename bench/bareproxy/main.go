// Command bareproxy is the floor bench/e2e-proxy.sh measures ldapgate
// against: a fasthttp reverse proxy with nothing else (no session check, no
// header rules, no metrics), upstream connections kept alive.
package main

import (
	"flag"
	"log"
	"net/http"
	_ "net/http/pprof" // -pprof: the profile e2e-proxy.sh PPROF=1 takes
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18085", "address to listen on (loopback only)")
	upstream := flag.String("upstream", "127.0.0.1:18081", "upstream host:port")
	pprofAddr := flag.String("pprof", "", "serve /debug/pprof/ here (loopback only)")
	stream := flag.Bool("stream", false, "stream bodies both ways, as ldapgate must (bounded memory)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	c := &fasthttp.HostClient{Addr: *upstream, MaxConns: 1024, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		StreamResponseBody: *stream}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if err := c.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			}
		},
		NoDefaultServerHeader: true,
		StreamRequestBody:     *stream,
	}
	log.Fatal(srv.ListenAndServe(*listen))
}
