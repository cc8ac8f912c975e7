package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/app"
	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// logBuf collects a process's log; tests read it while it is written.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// randHex is a random string no code path could produce by accident, so a
// substring search for it in logs or answers means it leaked.
func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// echoUpstream answers with the request's headers as JSON; /public/slow
// (and /slow) sleep first, and report on arrived when the request got there.
type echoUpstream struct {
	URL     string
	arrived chan string
	// release, for a held upstream, ends the wait of its /slow requests.
	release chan struct{}
}

func startEchoUpstream(t *testing.T, slow time.Duration) *echoUpstream {
	return startEchoUpstreamWith(t, slow, nil)
}

// startHeldUpstream is an echo upstream whose /slow requests wait until
// the test closes its release channel: a test waits for events, not for a
// duration it hopes is long enough.
func startHeldUpstream(t *testing.T) *echoUpstream {
	return startEchoUpstreamWith(t, 0, make(chan struct{}))
}

func startEchoUpstreamWith(t *testing.T, slow time.Duration, release chan struct{}) *echoUpstream {
	t.Helper()
	u := &echoUpstream{arrived: make(chan string, 16), release: release}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			select {
			case u.arrived <- r.URL.Path:
			default:
			}
			var wait <-chan time.Time
			if release == nil {
				wait = time.After(slow)
			}
			select {
			case <-wait:
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		h := map[string]string{"path": r.URL.RequestURI()}
		for k, v := range r.Header {
			h[k] = strings.Join(v, ",")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h)
	}))
	t.Cleanup(ts.Close)
	u.URL = ts.URL
	return u
}

// opsConfig is a complete config file for one ldapgate.
type opsConfig struct {
	Listen, Metrics, Upstream, DataDir, TokenFile, LogLevel string
	Session                                                 string // the session: mapping; default {secure_cookie: false}
	Extra                                                   string // more top-level YAML (directories:, headers:, ...)
}

func (c opsConfig) yaml() string {
	level := c.LogLevel
	if level == "" {
		level = "info"
	}
	session := c.Session
	if session == "" {
		session = "{secure_cookie: false}"
	}
	s := fmt.Sprintf("listen: %q\nmetrics_listen: %q\nupstream: %q\ndata_dir: %q\nlog_level: %s\nsession: %s\n",
		c.Listen, c.Metrics, c.Upstream, c.DataDir, level, session)
	if c.TokenFile != "" {
		s += fmt.Sprintf("admin_token_file: %q\n", c.TokenFile)
	}
	return s + c.Extra
}

// newOpsConfig fills addresses, a data dir and the admin token file.
func newOpsConfig(t *testing.T, upstreamURL, extra string) opsConfig {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin_token")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return opsConfig{
		Listen: freePort(t), Metrics: freePort(t), Upstream: upstreamURL,
		DataDir: filepath.Join(dir, "data"), TokenFile: tokenFile, Extra: extra,
	}
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename: a SIGHUP must never read a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// dirYAML is one entry of directories: for fixture fx under name.
func dirYAML(name string, fx *ldaptest.Fixture, extra string) string {
	d := fx.Dir
	return fmt.Sprintf(`  - name: %s
    type: %s
    urls: [%q]
    base_dn: %q
    bind_dn: %q
    bind_password: %q
    users_dn: %q
    groups_dn: %q
    domain: %q
    role_mapping:
      admin: [%q]
      user: [%q]
%s`, name, d.Type, d.URLs[0], d.BaseDN, d.BindDN, d.BindPassword.Reveal(), d.UsersDN, d.GroupsDN, d.Domain,
		d.RoleMapping["admin"][0], d.RoleMapping["user"][0], extra)
}

// opsGate is ldapgate run in-process (app.Run, as `serve` does), with its
// metrics address and its JSON log at debug level.
type opsGate struct {
	*gate
	metrics string // http://host:port of metrics_listen
	logs    *logBuf
	dataDir string

	cancel   func()
	done     chan error
	stopOnce sync.Once
	runErr   error
}

func startOpsGate(t *testing.T, c opsConfig) *opsGate {
	t.Helper()
	return startOpsGateWith(t, c, app.Options{})
}

// startOpsGateWith runs app.Run with opt (its Ready, Logger and Version are
// set here).
func startOpsGateWith(t *testing.T, c opsConfig, opt app.Options) *opsGate {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &logBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	opt.Version = "e2e"
	opt.Ready = func() { close(ready) }
	opt.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() { done <- app.Run(ctx, cfg, opt) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("app.Run: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("app did not start")
	}
	g := &opsGate{gate: &gate{t: t, base: "http://" + c.Listen}, metrics: "http://" + c.Metrics, logs: logs,
		dataDir: c.DataDir, cancel: cancel, done: done}
	t.Cleanup(func() {
		if err := g.stop(); err != nil {
			t.Errorf("app.Run: %v", err)
		}
		if t.Failed() {
			t.Logf("ldapgate log:\n%s", logs.String())
		}
	})
	return g
}

// stop ends app.Run (as SIGTERM does for serve) and returns its error.
func (g *opsGate) stop() error {
	g.stopOnce.Do(func() {
		g.cancel()
		g.runErr = <-g.done
	})
	return g.runErr
}

// get fetches url and returns status and body.
func get(t *testing.T, url string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// proc is the real ldapgate binary running `serve`.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	base   string
	stderr *logBuf
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, after done
}

// startBinary runs `bin serve -config cfgPath` and waits until listen serves
// /login. The process is killed at cleanup if the test left it running.
func startBinary(t *testing.T, bin, cfgPath, listen string) *proc {
	t.Helper()
	return startCommand(t, exec.Command(bin, "serve", "-config", cfgPath), listen)
}

// startCommand runs cmd, a `serve` of the binary (possibly through a shell
// that execs it, keeping its pid), as startBinary does.
func startCommand(t *testing.T, cmd *exec.Cmd, listen string) *proc {
	t.Helper()
	p := &proc{t: t, base: "http://" + listen, stderr: &logBuf{}, done: make(chan struct{})}
	p.cmd = cmd
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("ldapgate (pid %d) log:\n%s", p.cmd.Process.Pid, p.stderr.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.base + "/login")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("ldapgate exited at start: %v\n%s", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ldapgate did not serve /login on %s (last error %v)\n%s", listen, err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitLog waits until the log contains every one of subs (in one line).
func waitLog(t *testing.T, logs *logBuf, timeout time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v", subs, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually retries cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
