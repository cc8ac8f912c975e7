package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// earlyUpstream answers every request with answer after reading its
// headers and `read` bytes of its body, then closes the connection with
// the rest of the upload unread (the kernel resets it), as a server
// refusing a too-large upload does.
func earlyUpstream(t *testing.T, read int, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				if _, err := io.CopyN(io.Discard, br, int64(read)); err != nil {
					return
				}
				_, _ = io.WriteString(c, answer)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestUpstreamEarlyAnswer: an upstream that answers 413 after a few KiB of
// a 50 MiB upload and closes: the client gets that 413 and its body, not a
// 502 (the write of the rest of the upload fails first). Then the gate
// still proxies: the broken connection is not reused.
func TestUpstreamEarlyAnswer(t *testing.T) {
	const size = 50 << 20
	answer := "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
	for _, tc := range []struct {
		name    string
		answer  string
		chunked bool
	}{
		{"413 with Content-Length", answer, false},
		{"413 chunked upload", answer, true},
		// Without "Connection: close" the gate must not pool the connection.
		{"413 keep-alive", "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := earlyUpstream(t, 4<<10, tc.answer)
			g := startGate(t, Options{Upstream: up}, alice)
			for i := range 3 {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, g.url+"/upload", &patternReader{n: size})
				if err != nil {
					t.Fatal(err)
				}
				if !tc.chunked {
					req.ContentLength = size
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestEntityTooLarge || string(body) != "too large" {
					t.Fatalf("request %d: %d %q, want 413 %q", i, resp.StatusCode, body, "too large")
				}
			}
		})
	}
	// A small body the upstream reads whole before answering still works.
	up := earlyUpstream(t, 5, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	g := startGate(t, Options{Upstream: up}, alice)
	for i := range 3 {
		resp, body := rawDo(t, g.addr, fmt.Sprintf("POST /x%d HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", i))
		if resp.StatusCode != http.StatusCreated || string(body) != "ok" {
			t.Fatalf("small upload %d: %d %q", i, resp.StatusCode, body)
		}
	}
}
