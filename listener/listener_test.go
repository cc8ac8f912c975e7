package listener

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ldapgate/ldapgate/metrics"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func newTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// acceptAll accepts until l closes, handing conns out on a channel.
func acceptAll(t *testing.T, l *Listener) <-chan net.Conn {
	t.Helper()
	out := make(chan net.Conn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept returned %v; only net.ErrClosed is allowed", err)
				}
				return
			}
			out <- c
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return out
}

func dial(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMaxConnsWaits: past MaxConns the next connection is not accepted until
// an open one closes; then it is.
func TestMaxConnsWaits(t *testing.T) {
	m := metrics.New()
	l := Wrap(newTCP(t), "listen", Limits{MaxConns: 2}, slog.New(slog.DiscardHandler), m)
	conns := acceptAll(t, l)
	dial(t, l.Addr())
	dial(t, l.Addr())
	first, second := <-conns, <-conns
	defer second.Close()
	dial(t, l.Addr())
	waited := m.ListenerLimited.WithLabelValues("listen", "max_conns")
	waitFor(t, "the third accept waits", func() bool { return value(waited) == 1 })
	select {
	case <-conns:
		t.Fatal("a third connection was accepted with MaxConns 2")
	default:
	}
	if n := value(m.ListenerConnections.WithLabelValues("listen")); n != 2 {
		t.Errorf("open connections %v, want 2", n)
	}
	first.Close()
	first.Close() // a second Close must not free a second slot
	select {
	case c := <-conns:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection was not accepted after one closed")
	}
}

// TestPerIPLimit: the connection past MaxConnsPerIP is closed at once and
// counted; one closing lets the address in again.
func TestPerIPLimit(t *testing.T) {
	m := metrics.New()
	var logs syncBuf
	l := Wrap(newTCP(t), "listen", Limits{MaxConnsPerIP: 1}, slog.New(slog.NewJSONHandler(&logs, nil)), m)
	conns := acceptAll(t, l)
	dial(t, l.Addr())
	first := <-conns
	over := dial(t, l.Addr())
	_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := over.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection past the limit: read %d, %v; want it closed", n, err)
	}
	if n := value(m.ListenerLimited.WithLabelValues("listen", "max_conns_per_ip")); n != 1 {
		t.Errorf("max_conns_per_ip refusals %v, want 1", n)
	}
	if !strings.Contains(logs.String(), `"client":"127.0.0.1"`) {
		t.Errorf("the refusal is not logged with the address: %s", logs.String())
	}
	first.Close()
	dial(t, l.Addr())
	select {
	case c := <-conns:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the address was not let in again after its connection closed")
	}
}

// failing returns errs from Accept, one per call, then delegates.
type failing struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *failing) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

func opErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// TestAcceptErrorsRetried: EMFILE, ENFILE, ECONNABORTED and others are
// counted by reason, logged at most once per kind and interval, and retried:
// Accept hands out the next real connection instead of an error.
func TestAcceptErrorsRetried(t *testing.T) {
	m := metrics.New()
	var logs syncBuf
	inner := &failing{Listener: newTCP(t), errs: []error{
		opErr(syscall.EMFILE), opErr(syscall.EMFILE), opErr(syscall.ENFILE), opErr(syscall.ECONNABORTED),
		opErr(syscall.ENOBUFS), opErr(syscall.EMFILE),
	}}
	l := Wrap(inner, "metrics_listen", Limits{MaxConns: 4}, slog.New(slog.NewJSONHandler(&logs, nil)), m)
	conns := acceptAll(t, l)
	dial(t, l.Addr())
	select {
	case c := <-conns:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted after the errors")
	}
	for reason, want := range map[string]float64{"fd_limit": 4, "aborted": 1, "other": 1} {
		if n := value(m.ListenerAcceptErrors.WithLabelValues("metrics_listen", reason)); n != want {
			t.Errorf("accept errors %s = %v, want %v", reason, n, want)
		}
	}
	out := logs.String()
	for _, reason := range []string{"fd_limit", "aborted", "other"} {
		if n := strings.Count(out, `"reason":"`+reason+`"`); n != 1 {
			t.Errorf("%d log lines for %s, want 1 (rate-limited):\n%s", n, reason, out)
		}
	}
	if !strings.Contains(out, "accepting connections again") {
		t.Errorf("recovery not logged:\n%s", out)
	}
	// Slots taken by failed accepts were given back: with no connection
	// open, only the next Accept, waiting, holds one.
	waitFor(t, "one slot held", func() bool { return len(l.slots) == 1 })
}

// TestCloseEndsAWaitingAccept: Close ends an Accept waiting for a slot or
// backing off.
func TestCloseEndsAWaitingAccept(t *testing.T) {
	for name, l := range map[string]*Listener{
		"waiting for a slot": Wrap(newTCP(t), "listen", Limits{MaxConns: 1}, slog.New(slog.DiscardHandler), metrics.New()),
		"backing off": Wrap(&failing{Listener: newTCP(t), errs: []error{opErr(syscall.EMFILE)}}, "listen", Limits{},
			slog.New(slog.DiscardHandler), metrics.New()),
	} {
		if name == "waiting for a slot" {
			l.slots <- struct{}{}
		}
		res := make(chan error, 1)
		go func() { _, err := l.Accept(); res <- err }()
		l.Close()
		select {
		case err := <-res:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s: Accept after Close: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Accept still blocked after Close", name)
		}
	}
}

func TestIPKey(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2"},
		{"[::ffff:192.0.2.1]:1", "192.0.2.1:2"},
	} {
		a, _ := net.ResolveTCPAddr("tcp", tt.a)
		b, _ := net.ResolveTCPAddr("tcp", tt.b)
		if ipKey(a) != ipKey(b) {
			t.Errorf("%s and %s counted apart: %v, %v", tt.a, tt.b, ipKey(a), ipKey(b))
		}
	}
	a, _ := net.ResolveTCPAddr("tcp", "[2001:db8:1:2::1]:1")
	b, _ := net.ResolveTCPAddr("tcp", "[2001:db8:1:3::1]:1")
	if ipKey(a) == ipKey(b) {
		t.Error("two /64s counted together")
	}
}
