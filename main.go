// Command ldapgate is an LDAP-aware authentication sidecar: it syncs
// directory users into its own store, logs them in with an LDAP bind, and
// proxies their requests to the platform with identity headers. main only
// parses the command line and wires; the work lives in the packages.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ldapgate/ldapgate/app"
	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/demo"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		// Before the flag rule below: a leading "-" otherwise means
		// "serve's flags", and serve would answer its own usage and 2.
		cmd, args = "help", args[1:]
	case len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-':
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stderr)
	case "check-config":
		return checkConfig(args, stdout, stderr)
	case "demo":
		return runDemo(args, stdout, stderr)
	case "hash-password":
		return hashPassword(os.Stdin, stdout, stderr)
	case "healthcheck":
		return healthcheck(args, stderr)
	case "migrate-store":
		return migrateStore(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "ldapgate", buildVersion())
		return 0
	case "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "ldapgate: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  ldapgate [serve] -config FILE        run the sidecar (default command)
  ldapgate check-config -config FILE   validate a config file and exit
  ldapgate demo [-listen ADDR]         embedded directory + demo upstream, no setup
  ldapgate hash-password < PASSWORD    print an argon2id hash for local_users
  ldapgate healthcheck [-url URL]      exit 0 if /healthz answers 200 (container HEALTHCHECK)
  ldapgate migrate-store -config FILE [-from badger:DIR] [-to postgres]
                                       copy a badger store into the config's PostgreSQL store
  ldapgate version                     print the version
  ldapgate help                        this list (also -h, --help)
`)
}

func serve(args []string, stderr io.Writer) int {
	cfg, code := loadConfig("serve", args, stderr)
	if cfg == nil {
		return code
	}
	ctx, stop := stopOnSignal()
	defer stop()
	if err := app.Run(ctx, cfg, app.Options{Version: buildVersion()}); err != nil {
		fmt.Fprintf(stderr, "ldapgate: %v\n", err)
		return 1
	}
	return 0
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	cfg, code := loadConfig("check-config", args, stderr)
	if cfg == nil {
		return code
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w.Error())
	}
	fmt.Fprintf(stdout, "%s: ok (%d directories, %d local users)\n", cfg.Path, len(cfg.Directories), len(cfg.LocalUsers))
	return 0
}

// migrateStore copies a badger store (default: the config's data_dir)
// into the config's PostgreSQL store (SPEC §12).
func migrateStore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/ldapgate/config.yaml", "config file (its store.postgres is the target)")
	from := fs.String("from", "", "badger:DIR, the store to copy (default: badger:<data_dir>)")
	to := fs.String("to", "postgres", "postgres: the config's store.postgres")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *to != "postgres" {
		fmt.Fprintf(stderr, "migrate-store: -to %q: only postgres (the config's store.postgres) is supported\n", *to)
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return 1
	}
	dir := cfg.DataDir
	if *from != "" {
		d, ok := strings.CutPrefix(*from, "badger:")
		if !ok || d == "" {
			fmt.Fprintf(stderr, "migrate-store: -from %q: want badger:DIR\n", *from)
			return 2
		}
		dir = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.MigrateStore(ctx, cfg, dir, stdout, slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// loadConfig parses the -config flag and loads the file; on failure it
// prints every error and returns the exit code with a nil config.
func loadConfig(cmd string, args []string, stderr io.Writer) (*config.Config, int) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/ldapgate/config.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return nil, 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, *path, err)
		return nil, 1
	}
	return cfg, 0
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address of the login page and proxy")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := stopOnSignal()
	defer stop()
	if err := demo.Run(ctx, demo.Options{Listen: *listen, Out: stdout, Version: buildVersion()}); err != nil {
		fmt.Fprintf(stderr, "ldapgate demo: %v\n", err)
		return 1
	}
	return 0
}

// hashPassword reads one password line from stdin (not from the command
// line, where it would land in shell history and ps) and prints the
// argon2id hash local_users[].password_hash takes.
func hashPassword(stdin io.Reader, stdout, stderr io.Writer) int {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "hash-password: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "hash-password: empty password")
		return 1
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "hash-password: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, hash)
	return 0
}

// healthcheck exists because the container image has no curl: Docker's
// HEALTHCHECK runs the binary itself against the metrics listener.
func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:9090/healthz", "health endpoint")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(*url)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s\n", resp.Status)
		return 1
	}
	return 0
}

// stopOnSignal returns a context ended by the first SIGTERM/SIGINT. Once
// it has ended the handler is removed, so a second signal during the
// graceful drain kills the process at once, as an operator pressing Ctrl-C
// twice expects.
func stopOnSignal() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// printConfigError lists every validation error, one per line, each with
// its key path and line, so an operator fixes the file in one pass.
func printConfigError(w io.Writer, path string, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		fmt.Fprintf(w, "%s: %d error(s):\n", path, len(errs))
		for _, e := range errs {
			fmt.Fprintf(w, "  %s\n", e.Error())
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
