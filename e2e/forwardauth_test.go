package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/auth"
)

// readmeBlock returns the one fenced code block of README.md in language
// lang (```lang ... ```).
func readmeBlock(t *testing.T, lang string) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?ms)^```"+regexp.QuoteMeta(lang)+"\n(.*?)^```$").FindAllSubmatch(readme, -1)
	if len(m) != 1 {
		t.Fatalf("README has %d ```%s blocks, want 1", len(m), lang)
	}
	return string(m[0][1])
}

// substitute replaces the README's placeholder addresses, failing when
// one is missing (the README changed under the test).
func substitute(t *testing.T, text string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("the README snippet no longer mentions %q", pairs[i])
		}
		text = strings.ReplaceAll(text, pairs[i], pairs[i+1])
	}
	return text
}

// forwardAuthSetup is ldapgate (the built binary, one local user), the
// platform (an echo server) and their addresses.
type forwardAuthSetup struct {
	gate, platform string // host:port
	user, password string
}

func startForwardAuthSetup(t *testing.T) forwardAuthSetup {
	t.Helper()
	bin := opsBinary(t)
	up := startEchoUpstream(t, 0)
	const user, password = "ops@local", "forward-auth-pass"
	hash, err := auth.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	c := newOpsConfig(t, up.URL, fmt.Sprintf(`local_users:
  - {username: %q, password_hash: %q, role: admin, email: ops@example.net}
`, user, hash))
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())
	startBinary(t, bin, path, c.Listen)
	return forwardAuthSetup{gate: c.Listen, platform: strings.TrimPrefix(up.URL, "http://"), user: user, password: password}
}

// startDaemon runs a proxy in the foreground until the test ends, and
// waits until addr accepts connections.
func startDaemon(t *testing.T, addr string, logPath string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "HOME="+filepath.Dir(logPath), "XDG_DATA_HOME="+filepath.Dir(logPath), "XDG_CONFIG_HOME="+filepath.Dir(logPath))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited at start:\n%s", name, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s", name, addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func needBinary(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("LDAPGATE_REQUIRE_REAL_LDAP") == "1" {
			t.Fatalf("%s missing (scripts/test.sh installs it)", path)
		}
		t.Skipf("%s missing (scripts/test.sh installs it)", path)
	}
}

// TestReadmeNginxSnippet runs the README's nginx snippet, as written, in
// front of ldapgate and a platform.
func TestReadmeNginxSnippet(t *testing.T) {
	needBinary(t, "/usr/sbin/nginx")
	s := startForwardAuthSetup(t)
	dir := t.TempDir()
	listen := freePort(t)
	snippet := substitute(t, readmeBlock(t, "nginx"),
		"127.0.0.1:8080", s.gate,
		"http://platform", "http://"+s.platform)
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s;
%[3]s
    }
}
`, dir, listen, snippet)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, listen, filepath.Join(dir, "stderr.log"), "/usr/sbin/nginx", "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
	forwardAuthStory(t, s, "http://"+listen, true)
}

// TestReadmeCaddySnippet runs the README's Caddyfile snippet, as written,
// in front of ldapgate and a platform. Only the global options are the
// test's: no admin endpoint, no automatic HTTPS, loopback only.
func TestReadmeCaddySnippet(t *testing.T) {
	needBinary(t, "/usr/bin/caddy")
	s := startForwardAuthSetup(t)
	dir := t.TempDir()
	listen := freePort(t)
	site := substitute(t, readmeBlock(t, "caddyfile"),
		"ldapgate:8080", s.gate,
		"platform:3000", s.platform,
		"example.com {", "http://"+listen+" {")
	conf := "{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\n\n" + site
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, listen, filepath.Join(dir, "caddy.log"), "/usr/bin/caddy", "run", "--config", path, "--adapter", "caddyfile")
	forwardAuthStory(t, s, "http://"+listen, false)
}

// forwardAuthStory: what an operator expects of a forward-auth setup at
// base. underscores: the proxy drops X_Forwarded_User spellings too.
func forwardAuthStory(t *testing.T, s forwardAuthSetup, base string, underscores bool) {
	t.Helper()
	jar := &http.Client{Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, target, body string, headers ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header[k] = append(req.Header[k], strings.TrimSpace(v))
		}
		resp, err := jar.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	spoofed := []string{"X-Forwarded-User: mallory@evil", "X-Forwarded-Role: admin", "X-Forwarded-Email: m@evil",
		"X-Forwarded-Groups: evil", "x-forwarded-user: mallory2@evil"}
	if underscores {
		spoofed = append(spoofed, "X_Forwarded_User: mallory3@evil")
	}
	page := base + "/page/x?a=1&b=%2F"

	// A browser without a session: to the login page, rd the page asked for.
	resp, body := do("GET", page, "", append([]string{"Accept: text/html"}, spoofed...)...)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("browser without a session: %d %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	if loc, err = loc.Parse(resp.Header.Get("Location")); err != nil || loc.Path != "/login" || loc.Query().Get("rd") != page {
		t.Fatalf("browser without a session sent to %q, want /login with rd=%s", resp.Header.Get("Location"), page)
	}
	if resp, body := do("GET", loc.String(), "", "Accept: text/html"); resp.StatusCode != 200 ||
		!strings.Contains(string(body), `name="rd" value="`+strings.ReplaceAll(page, "&", "&amp;")+`"`) {
		t.Fatalf("login page through the proxy: %d\n%s", resp.StatusCode, body)
	}
	// An API client gets 401.
	if resp, body := do("GET", page, "", append([]string{"Accept: application/json"}, spoofed...)...); resp.StatusCode != 401 {
		t.Fatalf("API client without a session: %d %s", resp.StatusCode, body)
	}

	// The form login lands on the page asked for, with the cookie.
	form := url.Values{"username": {s.user}, "password": {s.password}, "rd": {page}}.Encode()
	resp, body = do("POST", base+"/login", form, "Content-Type: application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != page {
		t.Fatalf("form login: %d Location %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "ldapgate_session" {
			cookie = "Cookie: " + c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatalf("form login set no session cookie: %v", resp.Header)
	}
	platformSees := func(what string, headers ...string) {
		t.Helper()
		resp, body := do("GET", page, "", append(headers, spoofed...)...)
		var got map[string]string
		if resp.StatusCode != 200 || json.Unmarshal(body, &got) != nil {
			t.Fatalf("%s: %d %s", what, resp.StatusCode, body)
		}
		if got["path"] != "/page/x?a=1&b=%2F" || got["X-Forwarded-User"] != s.user || got["X-Forwarded-Role"] != "admin" ||
			got["X-Forwarded-Email"] != "ops@example.net" || got["X-Forwarded-Groups"] != "" {
			t.Errorf("%s: the platform received %v", what, got)
		}
		if underscores && got["X_Forwarded_User"] != "" {
			t.Errorf("%s: the platform received X_Forwarded_User %q", what, got["X_Forwarded_User"])
		}
	}
	platformSees("with the session cookie", cookie, "Accept: text/html")

	// An API client's token login through the proxy, then Bearer.
	resp, body = do("POST", base+"/auth/v4/public/token", fmt.Sprintf(`{"username": %q, "password": %q}`, s.user, s.password),
		"Content-Type: application/json")
	var tok struct{ Token string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &tok) != nil || tok.Token == "" {
		t.Fatalf("token login through the proxy: %d %s", resp.StatusCode, body)
	}
	platformSees("with a Bearer token", "Authorization: Bearer "+tok.Token)
}
