package app

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// TestFasthttpLogRedacts: fasthttp's messages keep their shape and the
// addresses, never request bytes, even from errors SecureErrorLogMessage
// does not cover.
func TestFasthttpLogRedacts(t *testing.T) {
	const secret = "tok-0123456789abcdef"
	var buf bytes.Buffer
	p := fasthttpLog{slog.New(slog.NewJSONHandler(&buf, nil))}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 5555}
	p.Printf("error when serving connection %q<->%q: %v", local, remote,
		errors.New(`error when reading request headers: cannot find whitespace in the first line of request "DELETE /auth/v4/token/`+secret+`\r\n": buffer size=40`))
	p.Printf("error when serving connection %q<->%q: %v", local, remote,
		errors.New("error when reading request headers: invalid header key: buffer size=98, contents: Authorization: Bearer "+secret))
	p.Printf("%.3f %s - %s", 1.5, "GET /auth/v4/token/"+secret, "msg")
	p.Printf("The number of connections from %s exceeds MaxConnsPerIP=%d", net.IPv4(192, 0, 2, 7), 5)
	out := buf.String()
	if strings.Contains(out, secret) {
		t.Fatalf("a request's bytes were logged:\n%s", out)
	}
	for _, want := range []string{`127.0.0.1:8080`, `192.0.2.7:5555`, "cannot find whitespace in the first line of request [redacted]", "MaxConnsPerIP=5"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
