// Command gate is the proxy half of benchmark (a): a fasthttp.Server
// running proxy.Forward for a fixed user, configured the way ldapgate's
// front runs it (streamed request bodies, no multipart pre-parsing). The
// session check is left out; benchmark (b) measures it on its own.
package main

import (
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "address to listen on (loopback only)")
	upstream := flag.String("upstream", "http://127.0.0.1:18081", "upstream URL")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here until SIGINT/SIGTERM")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sig
			pprof.StopCPUProfile()
			_ = f.Close()
			os.Exit(0)
		}()
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	p, err := proxy.New(proxy.Options{Upstream: *upstream, CookieName: "ldapgate_session"}, logger, nil)
	if err != nil {
		log.Fatal(err)
	}
	user := &account.User{
		ID: 1, Username: "alice@example.org", Email: "alice@example.org",
		Role: "admin", Groups: []string{"admins", "staff"}, State: account.StateActive,
	}
	srv := &fasthttp.Server{
		Handler:                      func(ctx *fasthttp.RequestCtx) { p.Forward(ctx, user) },
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
	}
	log.Fatal(srv.ListenAndServe(*listen))
}
