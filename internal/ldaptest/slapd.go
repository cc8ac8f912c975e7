package ldaptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The OpenLDAP directory every StartSlapd server holds (see
// scripts/test-ldap/slapd.sh, which writes the configuration).
const (
	slapdBinary        = "/usr/sbin/slapd"
	slapdBaseDN        = "dc=example,dc=com"
	slapdAdminDN       = "cn=admin,dc=example,dc=com"
	slapdAdminPassword = "admin-secret"
	// SlapdSizeLimit is the most entries a non-paged search returns on a
	// harness slapd; more gives resultCode 4 (sizeLimitExceeded). Paged
	// searches are unlimited. Every fixture holds more users than this.
	SlapdSizeLimit = 3
)

// Startup bounds: slapadd of 100,000 users takes seconds, not minutes; a
// slapd that does not answer within slapdReadyTimeout is broken.
const (
	slapdPrepareTimeout = 3 * time.Minute
	slapdReadyTimeout   = 15 * time.Second
	slapdStartAttempts  = 5
)

// SlapdOptions tunes StartSlapdWith.
type SlapdOptions struct {
	// BulkUsers loads this many users (uid=bulk00000...) under
	// ou=bulk,dc=example,dc=com before slapd starts, offline with slapadd.
	BulkUsers int
	// BulkGroups spreads the bulk users round-robin over this many
	// groupOfNames (cn=bulkgrp000...) under ou=bulkgroups; default 10.
	BulkGroups int
}

// StartSlapd starts a fresh OpenLDAP slapd for this test (plain and LDAPS
// ports on 127.0.0.1, memberof and ppolicy overlays, size limit
// SlapdSizeLimit for non-paged searches) and kills it when the test ends.
func StartSlapd(t testing.TB) *Server {
	t.Helper()
	return StartSlapdWith(t, SlapdOptions{})
}

// StartSlapdWith is StartSlapd with bulk data loaded before the start.
func StartSlapdWith(t testing.TB, opts SlapdOptions) *Server {
	t.Helper()
	if _, err := os.Stat(slapdBinary); err != nil {
		Missing(t, "%s not installed (apt-get install slapd ldap-utils)", slapdBinary)
		return nil
	}
	script, err := slapdScript()
	if err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	dir := t.TempDir()
	certs, err := testCerts()
	if err != nil {
		t.Fatalf("ldaptest: certificates: %v", err)
	}
	if err := certs.writeTo(dir); err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	var extra []string
	if opts.BulkUsers > 0 {
		path := filepath.Join(dir, "bulk.ldif")
		if err := writeBulkLDIF(path, opts); err != nil {
			t.Fatalf("ldaptest: bulk LDIF: %v", err)
		}
		extra = append(extra, path)
	}

	// The script prepares (config, base entries, bulk load) but does not
	// start slapd: the harness starts it itself so it owns the process, can
	// kill it, and reads its stderr.
	ctx, cancel := context.WithTimeout(context.Background(), slapdPrepareTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, append([]string{dir, "0", "0"}, extra...)...)
	cmd.Env = append(os.Environ(), "SLAPD_PREPARE_ONLY=1", "SLAPD_ADMIN_PASSWORD="+slapdAdminPassword)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ldaptest: %s: %v\n%s", script, err, out)
	}

	var (
		p       *slapdProcess
		lastErr error
	)
	for range slapdStartAttempts {
		port, tlsPort, err := freePorts()
		if err != nil {
			t.Fatalf("ldaptest: %v", err)
		}
		p, lastErr = startSlapdProcess(dir, port, tlsPort)
		if lastErr == nil {
			break
		}
		if !errors.Is(lastErr, errPortTaken) {
			t.Fatalf("ldaptest: %v", lastErr)
		}
		// Another process took a port between our probe and slapd's bind.
	}
	if lastErr != nil {
		t.Fatalf("ldaptest: slapd: %v", lastErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out := p.stderr.String(); out != "" {
				t.Logf("slapd stderr (%s):\n%s", dir, out)
			}
		}
	})
	s := &Server{
		Flavor:        OpenLDAP,
		URL:           "ldap://127.0.0.1:" + strconv.Itoa(p.port),
		LDAPSURL:      "ldaps://127.0.0.1:" + strconv.Itoa(p.tlsPort),
		CAFile:        filepath.Join(dir, "ca.pem"),
		BaseDN:        slapdBaseDN,
		AdminDN:       slapdAdminDN,
		AdminPassword: slapdAdminPassword,
		Stop:          p.stop,
		ops:           slapdOps{},
	}
	var mu sync.Mutex
	s.Restart = func(t testing.TB, crash bool) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if crash {
			p.stop()
		} else {
			p.terminate()
		}
		np, err := startSlapdProcess(dir, p.port, p.tlsPort)
		if err != nil {
			t.Fatalf("ldaptest: restarting slapd: %v", err)
		}
		p = np
		t.Cleanup(np.stop)
	}
	s.Stop = func() {
		mu.Lock()
		defer mu.Unlock()
		p.stop()
	}
	t.Cleanup(p.stop)
	return s
}

// slapdScript finds scripts/test-ldap/slapd.sh from this source file, so
// tests work from any package directory.
func slapdScript() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the ldaptest source directory")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "test-ldap", "slapd.sh")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("slapd script: %w", err)
	}
	return p, nil
}

// freePorts asks the kernel for two free ports on 127.0.0.1. Both listeners
// stay open until both are picked so the two ports differ; the small window
// before slapd binds them is covered by retrying on errPortTaken.
func freePorts() (int, int, error) {
	var ports [2]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

var errPortTaken = errors.New("port already in use")

// slapdProcess is a running slapd owned by the harness.
type slapdProcess struct {
	cmd           *exec.Cmd
	port, tlsPort int
	stderr        *lockedBuffer
	done          chan struct{} // closed when the process has been reaped
	stopOnce      sync.Once
}

func startSlapdProcess(dir string, port, tlsPort int) (*slapdProcess, error) {
	p := &slapdProcess{
		port:    port,
		tlsPort: tlsPort,
		stderr:  &lockedBuffer{},
		done:    make(chan struct{}),
	}
	urls := fmt.Sprintf("ldap://127.0.0.1:%d/ ldaps://127.0.0.1:%d/", port, tlsPort)
	// -d none: stay in the foreground and print only the messages logged at
	// no particular level, i.e. errors such as a failed bind(2); -d 0 would
	// print nothing at all.
	p.cmd = exec.Command(slapdBinary, "-d", "none", "-f", filepath.Join(dir, "slapd.conf"), "-h", urls)
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	// If the test binary dies (timeout panic, SIGKILL) no cleanup runs; the
	// kernel then kills slapd so it does not outlive the run holding ports.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", slapdBinary, err)
	}
	// The reaper goroutine ends when the process does; stop() guarantees that.
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()

	url := "ldap://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(slapdReadyTimeout)
	for {
		select {
		case <-p.done:
			out := p.stderr.String()
			if strings.Contains(out, "Address already in use") || !portsFree(port, tlsPort) {
				return nil, fmt.Errorf("%w: %s", errPortTaken, urls)
			}
			return nil, fmt.Errorf("slapd exited during start (%s): %s", p.cmd.ProcessState, out)
		default:
		}
		if err := pingLDAP(url); err == nil {
			return p, nil
		} else if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("slapd at %s not ready after %s: %w; stderr: %s", url, slapdReadyTimeout, err, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// portsFree reports whether both ports can be bound now.
func portsFree(ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		_ = l.Close()
	}
	return true
}

// stop kills slapd with SIGKILL, as a crash would, and waits until it is
// reaped (so its ports are closed when stop returns). Safe to call twice.
func (p *slapdProcess) stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	})
}

// terminate stops slapd with SIGTERM, as a service restart does: it
// writes its state (the syncprov contextCSN checkpoint) and exits. Killed
// if it has not exited within 10 s.
func (p *slapdProcess) terminate() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(10 * time.Second):
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// pingLDAP reads the root DSE anonymously: slapd answers it once ready.
func pingLDAP(url string) error {
	c, err := ldap.DialURL(url, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(time.Second)
	_, err = c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 1, false, "(objectClass=*)", []string{"namingContexts"}, nil))
	return err
}

// lockedBuffer collects a child's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Cap what we keep: -d 0 is quiet, but a misbehaving slapd must not
	// grow the test's memory without bound.
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
