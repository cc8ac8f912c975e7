package e2e

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/ldapgate/ldapgate/internal/ldaptest"
)

// ldapRecorder is a listener where an attacker would point a directory: it
// records the first LDAP message of every connection (a bind, with its
// password) and hangs up, so the client fails fast.
type ldapRecorder struct {
	URL string
	ln  net.Listener
	wg  sync.WaitGroup

	mu   sync.Mutex
	msgs [][]byte
}

func startLDAPRecorder(t *testing.T) *ldapRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &ldapRecorder{URL: "ldap://" + ln.Addr().String(), ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(time.Minute))
				if p, err := ber.ReadPacket(c); err == nil {
					r.mu.Lock()
					r.msgs = append(r.msgs, p.Bytes())
					r.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() { r.close() })
	return r
}

// received returns the messages so far. A check that binds here gets its
// answer (the hang-up) only after the message was recorded, so once the
// API call returned, its bind is in the list.
func (r *ldapRecorder) received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.msgs...)
}

// close stops listening and waits for the connections it took.
func (r *ldapRecorder) close() [][]byte {
	_ = r.ln.Close()
	r.wg.Wait()
	return r.received()
}

func errorCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func containing(msgs [][]byte, secret string) int {
	n := 0
	for _, m := range msgs {
		if bytes.Contains(m, []byte(secret)) {
			n++
		}
	}
	return n
}

// TestPatchDirectoryNeedsPasswordToMove is finding 5: a PATCH that changes
// where or how ldapgate connects (urls, start_tls, tls, bind_dn) must give
// bind_password again (422), and no connection check ever sends the stored
// password to a server it was not entered for; other edits keep it.
func TestPatchDirectoryNeedsPasswordToMove(t *testing.T) {
	srv := ldaptest.StartSlapd(t)
	if srv == nil {
		return
	}
	fx := srv.NewFixture(t)
	g := startGate(t, "")
	stored := fx.Dir.BindPassword.Reveal()
	created := g.must(200, "POST", "/auth/v4/ldap", "admin", directoryBody(fx, "moving", "username_at_domain", stored))
	dirPath := "/auth/v4/ldap/" + id(created["id"])
	attacker := startLDAPRecorder(t)

	for _, tc := range []struct {
		name  string
		patch map[string]any
	}{
		{"urls", map[string]any{"urls": []string{attacker.URL}}},
		{"urls, a second server added", map[string]any{"urls": []string{fx.Dir.URLs[0], attacker.URL}}},
		{"start_tls", map[string]any{"start_tls": true}},
		{"tls.insecure_skip_verify", map[string]any{"tls": map[string]any{"insecure_skip_verify": true}}},
		{"tls.ca_file", map[string]any{"tls": map[string]any{"ca_file": "/etc/ssl/certs/ca-certificates.crt"}}},
		{"bind_dn", map[string]any{"bind_dn": "cn=someone-else,dc=example,dc=com"}},
		{"urls with an empty bind_password", map[string]any{"urls": []string{attacker.URL}, "bind_password": ""}},
	} {
		_, out, raw := g.call("PATCH", dirPath, "admin", tc.patch)
		if errorCode(out) != "bind_password_required" {
			t.Errorf("PATCH %s without bind_password: %s, want 422 bind_password_required", tc.name, raw)
		}
		if n := containing(attacker.received(), stored); n > 0 {
			t.Errorf("PATCH %s: the attacker's listener received the stored bind password (%d binds)", tc.name, n)
		}
	}
	after := g.must(200, "GET", dirPath, "admin", nil)
	if urls, _ := after["urls"].([]any); len(urls) != 1 || urls[0] != fx.Dir.URLs[0] || after["bind_dn"] != fx.Dir.BindDN ||
		after["start_tls"] != false || after["tls"].(map[string]any)["insecure_skip_verify"] != false {
		t.Fatalf("refused PATCHes changed the directory: %v", after)
	}

	// Edits that move nothing keep the stored password, which still binds.
	for _, patch := range []map[string]any{
		{"note": "second floor"},
		{"schedule": "hourly"},
		{"role_mapping": map[string][]string{"admin": {fx.Groups["admins"]}}},
		{"urls": fx.Dir.URLs, "bind_dn": fx.Dir.BindDN, "note": "the whole form sent back"},
	} {
		g.must(200, "PATCH", dirPath, "admin", patch)
	}
	g.must(200, "POST", dirPath+"/check", "admin", nil)

	// With bind_password the move is the operator's: the check binds with
	// the password given for the new server, never the stored one.
	entered := "entered-for-the-new-server-" + randHex(t, 8)
	out := g.must(422, "PATCH", dirPath, "admin", map[string]any{"urls": []string{attacker.URL}, "bind_password": entered})
	if errorCode(out) != "ldap_check_failed" {
		t.Fatalf("PATCH urls with bind_password to a dead server: %v", out)
	}
	if n := containing(attacker.received(), entered); n == 0 {
		t.Fatal("the check never reached the new server: the test proves nothing")
	}
	// And to a real server (slapd under another name) it is saved.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(fx.Dir.URLs[0], "ldap://"))
	moved := "ldap://localhost:" + port
	out = g.must(200, "PATCH", dirPath, "admin", map[string]any{"urls": []string{moved}, "bind_password": stored})
	if urls, _ := out["urls"].([]any); len(urls) != 1 || urls[0] != moved {
		t.Fatalf("moved directory: %v", out)
	}
	g.must(200, "POST", dirPath+"/check", "admin", nil)

	if n := containing(attacker.close(), stored); n > 0 {
		t.Fatalf("the attacker's listener received the stored bind password (%d binds)", n)
	}
}
