package e2e

// The listeners under hostile clients (SPEC §8, §11): running out of file
// descriptors, request heads sent slowly and many connections from one
// address never stop the service, and the log level is not a loopback
// peer's to change on listen.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/auth"
)

const opsPassword = "ops-password-0123"

// localUserYAML declares ops@local (password opsPassword) as a user.
func localUserYAML(t *testing.T) string {
	t.Helper()
	hash, err := auth.HashPassword(opsPassword)
	if err != nil {
		t.Fatal(err)
	}
	return "local_users:\n  - {username: ops@local, password_hash: '" + hash + "', role: user}\n"
}

// startLimited runs the binary with c under a descriptor limit of nofile
// (0: the test's own limit).
func startLimited(t *testing.T, c opsConfig, nofile int) *proc {
	t.Helper()
	bin := opsBinary(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, c.yaml())
	if nofile == 0 {
		return startBinary(t, bin, path, c.Listen)
	}
	// sh's ulimit sets the hard limit too, so the Go runtime cannot raise
	// it back at start; exec keeps the pid.
	cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" serve -config "$1"`, nofile), bin, path)
	p := startCommand(t, cmd, c.Listen)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max open files") && !strings.Contains(line, fmt.Sprint(nofile)) {
			t.Fatalf("descriptor limit not applied: %s", line)
		}
	}
	return p
}

// clientFrom is an HTTP client whose connections come from the loopback
// address src and are never reused.
// clientFrom is an HTTP client whose connections come from source address
// src (any 127.0.0.0/8 address on Linux): real distinct client addresses
// for the per-address limits.
func clientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:       d.DialContext,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// loginAndProxy logs ops@local in and sends a proxied request with client
// copies of X-Real-IP; it reports what failed, or "".
func loginAndProxy(base string) string {
	client := clientFrom("127.0.0.1")
	body := strings.NewReader(`{"username":"ops@local","password":"` + opsPassword + `"}`)
	resp, err := client.Post(base+"/auth/v4/public/token", "application/json", body)
	if err != nil {
		return "login: " + err.Error()
	}
	var tok struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || tok.Token == "" {
		return fmt.Sprintf("login: %d %v", resp.StatusCode, err)
	}
	req, _ := http.NewRequest("GET", base+"/app/after", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header["X-Real-IP"] = []string{"6.6.6.6"}
	req.Header["x_real_ip"] = []string{"6.6.6.7"}
	resp, err = client.Do(req)
	if err != nil {
		return "proxied request: " + err.Error()
	}
	defer resp.Body.Close()
	var echoed map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&echoed); err != nil || resp.StatusCode != 200 {
		return fmt.Sprintf("proxied request: %d %v", resp.StatusCode, err)
	}
	if echoed["X-Forwarded-User"] != "ops@local" {
		return fmt.Sprintf("proxied request reached the upstream as %q", echoed["X-Forwarded-User"])
	}
	// The client's copies, in every spelling, are replaced by the address
	// ldapgate saw.
	var realIP []string
	for k, v := range echoed {
		if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), "x-real-ip") {
			realIP = append(realIP, k+": "+v)
		}
	}
	if len(realIP) != 1 || realIP[0] != "X-Real-Ip: 127.0.0.1" {
		return fmt.Sprintf("upstream got X-Real-IP headers %q, want only the client address 127.0.0.1", realIP)
	}
	return ""
}

// metricValue sums the samples of family name whose labels include want.
func metricValue(t *testing.T, metricsBase, name string, want map[string]string) float64 {
	t.Helper()
	fams, _ := scrape(t, metricsBase)
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
	for _, m := range f.Metric {
		match := 0
		for _, lp := range m.Label {
			if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
				match++
			}
		}
		if match == len(want) {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// TestDescriptorExhaustionNeverStopsTheService: with the process at its
// descriptor limit (ulimit -n 256, 400 idle connections held open), the
// listener keeps retrying instead of ending Serve (which stopped the whole
// process: "Permanent error when accepting new connections: accept4: too
// many open files"), says so in the log and a metric, and once the
// connections close a login and a proxied request work again.
func TestDescriptorExhaustionNeverStopsTheService(t *testing.T) {
	up := startEchoUpstream(t, 0)
	// Idle connections must stay open for the test's length, and the
	// per-address cap must not hide the descriptor limit.
	c := newOpsConfig(t, up.URL, "server: {read_header_timeout: 10m, max_conns_per_ip: 100000}\n"+localUserYAML(t))
	p := startLimited(t, c, 256)

	var held []net.Conn
	for i := range 400 {
		conn, err := net.DialTimeout("tcp", c.Listen, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		held = append(held, conn)
	}
	waitLog(t, p.stderr, 60*time.Second, "accept failed", `"reason":"fd_limit"`)
	if !p.alive() {
		t.Fatalf("ldapgate exited at its descriptor limit: %v", p.err)
	}
	for _, conn := range held {
		conn.Close()
	}

	eventually(t, 60*time.Second, "login and proxied request after the connections closed", func() (bool, string) {
		if !p.alive() {
			t.Fatalf("ldapgate exited: %v", p.err)
		}
		last := loginAndProxy(p.base)
		return last == "", last
	})
	waitLog(t, p.stderr, 30*time.Second, "accepting connections again", `"listener":"listen"`)
	if n := metricValue(t, "http://"+c.Metrics, "ldapgate_listener_accept_errors_total",
		map[string]string{"listener": "listen", "reason": "fd_limit"}); n < 1 {
		t.Errorf("ldapgate_listener_accept_errors_total{listener=listen,reason=fd_limit} = %v", n)
	}
	// Rate-limited: a burst of failed accepts gives a line per 10 s, not
	// one per accept.
	if n := strings.Count(p.stderr.String(), "accept failed"); n > 20 {
		t.Errorf("%d log lines for failed accepts; want them rate-limited", n)
	}
	if !p.alive() {
		t.Fatalf("ldapgate exited: %v", p.err)
	}
}

// readUntilClosed reads conn until the server closes it; it reports false
// if conn was still open after wait.
func readUntilClosed(conn net.Conn, wait time.Duration) (string, bool) {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), false
	}
	return string(b), true
}

// TestSlowRequestHeadsAreDropped: a client that sends part of a request
// head, or nothing, is disconnected after read_header_timeout (it used to
// keep its connection, and a descriptor, for 5 minutes), on both
// listeners; a body that arrives slowly after complete headers is not cut.
func TestSlowRequestHeadsAreDropped(t *testing.T) {
	up := startEchoUpstream(t, 0)
	// idle_timeout is longer than the waits below: what closes a
	// connection here is read_header_timeout.
	c := newOpsConfig(t, up.URL, "server: {read_header_timeout: 1s, idle_timeout: 5m}\n")
	p := startLimited(t, c, 0)

	for _, addr := range []string{c.Listen, c.Metrics} {
		partial := dialFrom(t, "127.0.0.1", addr)
		if _, err := io.WriteString(partial, "GET /login HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "); err != nil {
			t.Fatal(err)
		}
		silent := dialFrom(t, "127.0.0.1", addr)
		for name, conn := range map[string]net.Conn{"partial head": partial, "no byte": silent} {
			if got, closed := readUntilClosed(conn, 30*time.Second); !closed {
				t.Errorf("%s: a client that sent a %s is still connected after 30 s (read_header_timeout 1s)", addr, name)
			} else if strings.Contains(got, " 200 ") {
				t.Errorf("%s: a %s was answered: %q", addr, name, got)
			}
		}
	}

	// On a keep-alive connection the next request's head has the same bound,
	// counted from its first byte.
	ka := dialFrom(t, "127.0.0.1", c.Listen)
	io.WriteString(ka, "GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(ka)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request on a keep-alive connection: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	io.WriteString(ka, "GET /login HTTP/1.1\r\nHo")
	if _, closed := readUntilClosed(ka, 30*time.Second); !closed {
		t.Error("a keep-alive connection with a partial second head is still open after 30 s")
	}

	// Complete headers, then a body slower than read_header_timeout.
	conn := dialFrom(t, "127.0.0.1", c.Listen)
	fmt.Fprintf(conn, "POST /auth/v4/internal/settings/log/level HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Length: 5\r\n\r\nde", adminToken)
	time.Sleep(2500 * time.Millisecond) // the slow client itself: 2.5 × read_header_timeout
	if _, err := io.WriteString(conn, "bug"); err != nil {
		t.Fatalf("the connection was cut while the body streamed: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("slow body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("slow body: %d", resp.StatusCode)
	}
	if !p.alive() {
		t.Fatal("ldapgate exited")
	}
}

// TestIdleKeepAliveClosed: a keep-alive connection with no next request is
// closed after server.idle_timeout (it used to stay 2 minutes), on both
// listeners.
func TestIdleKeepAliveClosed(t *testing.T) {
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "server: {read_header_timeout: 5m, idle_timeout: 1s}\n")
	startLimited(t, c, 0)
	for _, l := range []struct{ addr, path string }{{c.Listen, "/login"}, {c.Metrics, "/healthz"}} {
		conn := dialFrom(t, "127.0.0.1", l.addr)
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", l.path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != 200 || resp.Close {
			t.Fatalf("%s: keep-alive request: %v %v", l.addr, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if _, closed := readUntilClosed(conn, 30*time.Second); !closed {
			t.Errorf("%s: an idle keep-alive connection is still open after 30 s (idle_timeout 1s)", l.addr)
		}
	}
}

// TestConnectionsPerAddressCapped: past max_conns_per_ip the next connection
// from that address is closed unanswered, on both listeners, while another
// address is served; when one of its connections closes, the address is
// served again.
func TestConnectionsPerAddressCapped(t *testing.T) {
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "server: {read_header_timeout: 1m, max_conns_per_ip: 3}\n")
	p := startLimited(t, c, 0)

	for _, l := range []struct{ name, addr, path, src string }{
		{"listen", c.Listen, "/login", "127.0.0.3"},
		{"metrics_listen", c.Metrics, "/healthz", "127.0.0.4"},
	} {
		var held []net.Conn
		for range 3 {
			held = append(held, dialFrom(t, l.src, l.addr))
		}
		over := dialFrom(t, l.src, l.addr)
		fmt.Fprintf(over, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", l.path)
		if got, closed := readUntilClosed(over, 30*time.Second); !closed || got != "" {
			t.Errorf("%s: connection 4 from %s (max_conns_per_ip 3): closed %v, answer %q", l.name, l.src, closed, got)
		}
		if resp, err := clientFrom("127.0.0.2").Get("http://" + l.addr + l.path); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: another address is not served: %v %v", l.name, resp, err)
		} else {
			resp.Body.Close()
		}
		held[0].Close()
		eventually(t, 30*time.Second, l.name+": the address served again after one of its connections closed", func() (bool, string) {
			resp, err := clientFrom(l.src).Get("http://" + l.addr + l.path)
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == 200, resp.Status
		})
		if n := metricValue(t, "http://"+c.Metrics, "ldapgate_listener_limited_total",
			map[string]string{"listener": l.name, "limit": "max_conns_per_ip"}); n < 1 {
			t.Errorf("ldapgate_listener_limited_total{listener=%s,limit=max_conns_per_ip} = %v", l.name, n)
		}
	}
	waitLog(t, p.stderr, 10*time.Second, "too many from one address", `"client":"127.0.0.3"`)
}

// TestLogLevelInternalAuthOnMetricsListenOnly: on listen the log level needs
// admin credentials — `internal-auth: on` from a loopback peer (every
// client, behind a reverse proxy on the same host) is refused; on
// metrics_listen, which is never public, the platform guide's form works.
func TestLogLevelInternalAuthOnMetricsListenOnly(t *testing.T) {
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, "")
	p := startLimited(t, c, 0)
	post := func(base, body string, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), "POST", base+"/auth/v4/internal/settings/log/level", strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := clientFrom("127.0.0.1").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	listen, metrics := "http://"+c.Listen, "http://"+c.Metrics
	for _, tc := range []struct {
		name, base, body string
		header           []string
		want             int
	}{
		{"listen, internal-auth", listen, "debug", []string{"internal-auth", "on"}, 401},
		{"listen, internal-auth as a proxy forwards it", listen, "debug", []string{"internal-auth", "on", "X-Forwarded-For", "127.0.0.1"}, 401},
		{"listen, nothing", listen, "debug", nil, 401},
		{"listen, admin token", listen, "info", []string{"Authorization", "Bearer " + adminToken}, 200},
		{"metrics_listen, nothing", metrics, "debug", nil, 401},
		{"metrics_listen, internal-auth", metrics, "debug", []string{"internal-auth", "on"}, 200},
		{"metrics_listen, bad level", metrics, "loud", []string{"internal-auth", "on"}, 400},
	} {
		if code, body := post(tc.base, tc.body, tc.header...); code != tc.want {
			t.Errorf("%s: %d, want %d: %s", tc.name, code, tc.want, body)
		}
	}
	// Only the two accepted calls changed the level.
	logs := p.stderr.String()
	if n := strings.Count(logs, `"msg":"log level changed"`); n != 2 {
		t.Errorf("%d level changes logged, want 2:\n%s", n, logs)
	}
	waitLog(t, p.stderr, 5*time.Second, "log level changed", `"level":"DEBUG"`, `"via":"metrics_listen"`)
}
