package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// childUpstreamEnv carries the upstream URL to the proxy child process.
const childUpstreamEnv = "LDAPGATE_PROXY_TEST_CHILD_UPSTREAM"

// TestProxyChildProcess is not a test of its own: TestBoundedMemory runs
// the test binary again with only this test, so the proxy's memory is
// measured in a process that holds nothing else (no client, no upstream).
func TestProxyChildProcess(t *testing.T) {
	upstream := os.Getenv(childUpstreamEnv)
	if upstream == "" {
		t.Skip("helper process of TestBoundedMemory")
	}
	p, err := New(Options{Upstream: upstream, CookieName: testCookie}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Path()) == "/__rss" {
				ctx.SetBodyString(readStatus("VmRSS") + " " + readStatus("VmHWM"))
				return
			}
			p.Forward(ctx, alice)
		},
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		Logger:                       quietLogger{},
	}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("ADDR %s\n", ln.Addr())
	// The parent closes stdin when it is done.
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = p.Close()
	_ = srv.Shutdown()
}

// readStatus returns a /proc/self/status field in KiB, e.g. "VmHWM".
func readStatus(field string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "-1"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSuffix(strings.TrimSpace(v), " kB")
		}
	}
	return "-1"
}

// TestBoundedMemory proxies a 200 MiB download (with and without
// Content-Length) and a 200 MiB upload through a proxy process and checks
// its peak RSS grew by less than 50 MiB (issue 4 item 5).
func TestBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 600 MiB")
	}
	const size = 200 << 20
	const limitKiB = 50 << 10
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/download":
			w.Header().Set("Content-Length", strconv.Itoa(size))
			_, _ = io.Copy(w, &patternReader{n: size})
		case "/download-chunked":
			_, _ = io.Copy(w, &patternReader{n: size})
		default:
			echoHandler(w, r)
		}
	}))

	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childUpstreamEnv+"="+up.URL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	addr := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatalf("child printed no address: %v", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	base := "http://" + addr
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{DisableCompression: true}}

	rss := func() (cur, peak int) {
		t.Helper()
		resp, err := client.Get(base + "/__rss")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if _, err := fmt.Sscan(string(b), &cur, &peak); err != nil {
			t.Fatalf("rss answer %q: %v", b, err)
		}
		return cur, peak
	}

	// Warm up pools and buffers, then take the baseline.
	if resp, err := client.Get(base + "/warm"); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	startRSS, startPeak := rss()
	want := patternSHA(size)

	for _, path := range []string{"/download", "/download-chunked"} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != want {
			t.Fatalf("%s: got %d bytes (err %v), want %d intact", path, n, err, size)
		}
	}

	req, err := http.NewRequest(http.MethodPost, base+"/upload", &patternReader{n: size})
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e echoed
	if err := json.Unmarshal(body, &e); err != nil || e.BodyLen != size || e.BodySHA != want {
		t.Fatalf("upload: upstream answered %q (%v)", bytes.TrimSpace(body), err)
	}

	endRSS, endPeak := rss()
	growth := endPeak - startRSS
	t.Logf("proxy RSS: start %d KiB (peak %d), end %d KiB, peak %d KiB: growth %d KiB for 2×200 MiB down + 200 MiB up",
		startRSS, startPeak, endRSS, endPeak, growth)
	if growth > limitKiB {
		t.Errorf("peak RSS grew by %d KiB, limit %d KiB", growth, limitKiB)
	}
}
