// Package e2e drives the real binary from outside: `ldapgate demo` and
// `ldapgate serve` against a real slapd, through Debian's headless Chromium.
package e2e

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

var (
	portsMu sync.Mutex
	given   = map[string]bool{}
)

// freePort returns a loopback address nobody listens on, never the same one
// twice in this test binary (the kernel may hand a just-closed port out again).
func freePort(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !given[addr] {
			given[addr] = true
			return addr
		}
	}
}

// start runs the binary and waits until addr answers HTTP.
func start(t *testing.T, bin, addr string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = os.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		logs <- b.String()
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if l := <-logs; t.Failed() {
			t.Logf("ldapgate log:\n%s", l)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/login")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ldapgate did not serve /login on %s within 30s (last error %v)", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// browser returns a chromedp context on Debian's chromium with the flags
// that work on these machines (no sandbox as root, no background network),
// plus extra.
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	return browserFor(t, 90*time.Second, extra...)
}

// browserFor is browser with a whole-test bound of d.
func browserFor(t *testing.T, d time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("LDAPGATE_REQUIRE_REAL_LDAP") == "1" {
			t.Fatalf("chromium missing at %s (scripts/test.sh installs it)", chromiumPath)
		}
		t.Skipf("chromium missing at %s", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	opts = append(opts, extra...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	tctx, cancelT := context.WithTimeout(bctx, d)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	return tctx
}

// login fills and submits the login form on the current page.
func login(user, password string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("submit")),
	)
}

// text waits for the element and returns its text.
func text(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID(id))); err != nil {
		t.Fatalf("waiting for #%s: %v", id, err)
	}
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func TestDemoLoginInBrowser(t *testing.T) {
	bin := opsBinary(t)
	addr := freePort(t)
	start(t, bin, addr, "demo", "-listen", addr)
	ctx := browser(t)
	base := "http://" + addr

	// A protected URL sends the browser to the login page, and back after.
	do(t, ctx, chromedp.Navigate(base+"/vm/list?page=2"), chromedp.WaitVisible(chromedp.ID("username")))
	loginURL := location(t, ctx)
	if !strings.HasPrefix(loginURL, base+"/login?rd=") {
		t.Fatalf("protected page led to %q, want the login page with rd", loginURL)
	}

	// Wrong password: the page says so, without saying whether alice exists.
	do(t, ctx, login("alice@example.org", "wrong"))
	if msg := text(t, ctx, "error"); !strings.Contains(strings.ToLower(msg), "invalid") {
		t.Fatalf("error message %q", msg)
	}

	// Right password: back on the original URL, the upstream shows alice.
	do(t, ctx, chromedp.Navigate(loginURL), login("alice@example.org", "demo"))
	user, role, path := text(t, ctx, "user"), text(t, ctx, "role"), text(t, ctx, "path")
	landed := location(t, ctx)
	if user != "alice@example.org" || role != "admin" || path != "/vm/list?page=2" || landed != base+"/vm/list?page=2" {
		t.Fatalf("after login: user %q role %q path %q at %q", user, role, path, landed)
	}

	// carol is disabled in the directory: refused like a bad password.
	// Logging out is the page's form POST (a GET /logout is refused).
	do(t, ctx, chromedp.Click(chromedp.ID("logout")), login("carol@example.org", "demo"))
	if msg := text(t, ctx, "error"); !strings.Contains(strings.ToLower(msg), "invalid") {
		t.Fatalf("carol's error message %q", msg)
	}
}

func TestTwoDirectoriesDropDown(t *testing.T) {
	bin := opsBinary(t)
	fx1, fx2 := twoFixtures(t)
	addr := freePort(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(twoDirectoryConfig(t, addr, fx1, fx2)), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, bin, addr, "serve", "-config", cfg)
	ctx := browser(t)
	base := "http://" + addr

	type option struct{ Value, Text string }
	do(t, ctx, chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.ID("directory")))
	options, err := chromedp.Run(ctx, chromedp.Evaluate[[]option](
		`Array.from(document.querySelectorAll('#directory option')).map(o => ({Value: o.value, Text: o.textContent}))`))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, o := range options {
		for _, name := range []string{"first", "second"} {
			if strings.Contains(o.Text, name) {
				ids[name] = o.Value
			}
		}
	}
	if len(options) != 2 || len(ids) != 2 {
		t.Fatalf("drop-down options %+v, want the two directories", options)
	}

	// bob of the second directory logs in with a bare username once the
	// second directory is selected; with the first selected he is unknown.
	bob := fx2.Users["bob"]
	do(t, ctx, chromedp.SetValue(chromedp.ID("directory"), ids["first"]), login(bob, "Fixture-Pass1"))
	text(t, ctx, "error")

	do(t, ctx,
		chromedp.Navigate(base+"/login?rd=/dashboard"),
		chromedp.WaitVisible(chromedp.ID("directory")),
		chromedp.SetValue(chromedp.ID("directory"), ids["second"]),
		login(bob, "Fixture-Pass1"),
	)
	if user := text(t, ctx, "user"); user != bob+"@example.com" {
		t.Fatalf("upstream saw user %q, want %s@example.com", user, bob)
	}
	if got := location(t, ctx); got != base+"/dashboard" {
		t.Fatalf("landed on %q, want %s/dashboard", got, base)
	}
}
