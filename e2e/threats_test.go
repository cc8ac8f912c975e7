package e2e

// The points of SPEC §11 that earlier findings did not already cover with a
// test of the built binary: request smuggling never carries a request to
// the upstream without a session, huge request heads and bodies are refused
// without stopping the service, and a session cookie planted before a login
// never becomes the victim's session.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/auth"
)

// recordingUpstream notes the path and identity of every request it gets.
type recordingUpstream struct {
	url  string
	mu   sync.Mutex
	seen []string // "path user"
}

func startRecordingUpstream(t *testing.T) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, r.URL.Path+" "+r.Header.Get("X-Forwarded-User"))
		u.mu.Unlock()
		fmt.Fprint(w, "upstream")
	}))
	t.Cleanup(ts.Close)
	u.url = ts.URL
	return u
}

func (u *recordingUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// rawExchange writes req on a new connection and reads until the server
// closes it or goes quiet, returning what came back.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		return "write: " + err.Error()
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(bufio.NewReader(c))
	return string(b)
}

func loginToken(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Post(base+"/auth/v4/public/token", "application/json",
		strings.NewReader(`{"username":"ops@local","password":"`+opsPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != 200 || tok.Token == "" {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	return tok.Token
}

// Ambiguous framing (CL.TE, TE.CL, two lengths, obfuscated
// Transfer-Encoding) must not let a second request hide in a body: the
// upstream sees exactly the requests ldapgate accepted, each with the
// identity of the session that sent it, and nothing without a session.
func TestSmugglingNeverReachesUpstream(t *testing.T) {
	up := startRecordingUpstream(t)
	c := newOpsConfig(t, up.url, localUserYAML(t))
	p := startLimited(t, c, 0)
	tok := loginToken(t, p.base)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	chunkedSmuggle := "0\r\n\r\n" + smuggled
	cases := []struct{ name, head, body string }{
		{"CL.TE", "Content-Length: %d\r\nTransfer-Encoding: chunked\r\n", chunkedSmuggle},
		{"TE.CL", "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)},
		{"two lengths", "Content-Length: 0\r\nContent-Length: %d\r\n", smuggled},
		{"TE with space", "Content-Length: %d\r\nTransfer-Encoding : chunked\r\n", chunkedSmuggle},
		{"TE xchunked", "Content-Length: %d\r\nTransfer-Encoding: xchunked\r\n", chunkedSmuggle},
		{"TE list", "Content-Length: %d\r\nTransfer-Encoding: chunked, identity\r\n", chunkedSmuggle},
		{"TE obs-fold", "Content-Length: %d\r\nTransfer-Encoding:\r\n chunked\r\n", chunkedSmuggle},
	}
	for _, tc := range cases {
		for _, auth := range []string{"", "Authorization: Bearer " + tok + "\r\n"} {
			head := tc.head
			if strings.Contains(head, "%d") {
				head = fmt.Sprintf(head, len(tc.body))
			}
			req := "POST /app/first HTTP/1.1\r\nHost: gate\r\n" + auth + head + "\r\n" + tc.body
			got := rawExchange(t, c.Listen, req)
			if strings.Contains(got, "upstream") && auth == "" {
				t.Errorf("%s without a session reached the upstream:\n%s", tc.name, got)
			}
		}
	}
	// The upstream's view: no smuggled path, no request without the
	// session's identity.
	for _, r := range up.requests() {
		path, user, _ := strings.Cut(r, " ")
		if path != "/app/first" || user != "ops@local" {
			t.Errorf("upstream received %q (path %s, user %q)", r, path, user)
		}
	}
	if !p.alive() {
		t.Fatal("ldapgate exited")
	}
}

// Request heads past the read buffer and bodies past the login limit are
// refused; the process keeps serving.
func TestHugeHeadsAndBodiesRefused(t *testing.T) {
	up := startEchoUpstream(t, 0)
	c := newOpsConfig(t, up.URL, localUserYAML(t))
	p := startLimited(t, c, 0)

	huge := "GET /app/x HTTP/1.1\r\nHost: gate\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"
	got := rawExchange(t, c.Listen, huge)
	if strings.Contains(got, `"path"`) || (got != "" && !strings.HasPrefix(got, "HTTP/1.1 431") &&
		!strings.HasPrefix(got, "HTTP/1.1 400") && !strings.HasPrefix(got, "write:")) {
		t.Errorf("a 1 MiB header got %.200q", got)
	}
	many := "GET /app/x HTTP/1.1\r\nHost: gate\r\n" + strings.Repeat("X-H: 1\r\n", 20000) + "\r\n"
	got = rawExchange(t, c.Listen, many)
	if strings.Contains(got, `"path"`) || (got != "" && !strings.HasPrefix(got, "HTTP/1.1 431") &&
		!strings.HasPrefix(got, "HTTP/1.1 400") && !strings.HasPrefix(got, "write:")) {
		t.Errorf("20,000 header lines got %.200q", got)
	}
	// A login body of 64 MiB is refused without being read into memory.
	req, _ := http.NewRequest("POST", p.base+"/auth/v4/public/token",
		io.LimitReader(neverEnding('a'), 64<<20))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = 64 << 20
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("64 MiB login body: %d, want 413", resp.StatusCode)
		}
	}
	if msg := loginAndProxy(p.base); msg != "" {
		t.Fatalf("after huge requests: %s", msg)
	}
	if !p.alive() {
		t.Fatal("ldapgate exited")
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// Session fixation: a cookie planted in the victim's browser before they
// log in (a made-up token, or the attacker's own session) is never what the
// login hands back, and the attacker's token never becomes the victim's.
func TestPlantedSessionNeverBecomesTheVictims(t *testing.T) {
	up := startRecordingUpstream(t)
	c := newOpsConfig(t, up.url, localUserYAML(t)+
		"  - {username: attacker@local, password_hash: '"+mustHash(t, "attacker-pass-1")+"', role: user}\n")
	p := startLimited(t, c, 0)

	resp, err := http.Post(p.base+"/auth/v4/public/token", "application/json",
		strings.NewReader(`{"username":"attacker@local","password":"attacker-pass-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	var att struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&att)
	resp.Body.Close()
	madeUp := strings.Repeat("A", 43)

	for _, planted := range []string{madeUp, att.Token} {
		client := clientFrom("127.0.0.1")
		form := "username=ops%40local&password=" + opsPassword + "&rd=%2F"
		req, _ := http.NewRequest("POST", p.base+"/login", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", "ldapgate_session="+planted)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var issued string
		for _, ck := range resp.Cookies() {
			if ck.Name == "ldapgate_session" {
				issued = ck.Value
			}
		}
		if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
			t.Fatalf("form login: %d", resp.StatusCode)
		}
		if issued == "" || issued == planted {
			t.Fatalf("login with a planted cookie issued %q (planted %q)", issued, planted)
		}
		// The planted token is not the victim's.
		req, _ = http.NewRequest("GET", p.base+"/auth/v4/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+planted)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var who struct{ Username string }
		_ = json.NewDecoder(resp.Body).Decode(&who)
		resp.Body.Close()
		if who.Username == "ops@local" {
			t.Fatalf("the planted token %q now belongs to the victim", planted)
		}
	}
}

func mustHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
