package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// Environment written by scripts/test-ldap/samba.sh start (its stdout and
// STATE_DIR/server.env): one Samba AD DC per test run, shared by every
// package, so fixtures carry unique prefixes.
const (
	sambaEnvURL           = "LDAPGATE_TEST_SAMBA_URL"
	sambaEnvLDAPSURL      = "LDAPGATE_TEST_SAMBA_LDAPS_URL"
	sambaEnvCA            = "LDAPGATE_TEST_SAMBA_CA"
	sambaEnvTLSCert       = "LDAPGATE_TEST_SAMBA_TLS_CERT"
	sambaEnvTLSKey        = "LDAPGATE_TEST_SAMBA_TLS_KEY"
	sambaEnvBase          = "LDAPGATE_TEST_SAMBA_BASE"
	sambaEnvAdminDN       = "LDAPGATE_TEST_SAMBA_ADMIN_DN"
	sambaEnvAdminPassword = "LDAPGATE_TEST_SAMBA_ADMIN_PASSWORD"
	// SambaEnvADLimits=0 hands tests Samba's own ports instead of the
	// AD-limits proxy (see sambaADLimitsProxy), to compare the two.
	SambaEnvADLimits = "LDAPGATE_TEST_SAMBA_AD_LIMITS"
)

// sambaEnv is the script's configuration.
type sambaEnv struct {
	url, ldapsURL, ca, cert, key, base, adminDN, adminPassword string
}

// sambaEnvFromGetenv reads the script's variables and names those missing;
// getenv is a parameter so the mapping is testable without a server.
func sambaEnvFromGetenv(getenv func(string) string) (sambaEnv, []string) {
	var missing []string
	get := func(k string) string {
		v := getenv(k)
		if v == "" {
			missing = append(missing, k)
		}
		return v
	}
	e := sambaEnv{
		url:           get(sambaEnvURL),
		ldapsURL:      get(sambaEnvLDAPSURL),
		ca:            get(sambaEnvCA),
		cert:          get(sambaEnvTLSCert),
		key:           get(sambaEnvTLSKey),
		base:          get(sambaEnvBase),
		adminDN:       get(sambaEnvAdminDN),
		adminPassword: get(sambaEnvAdminPassword),
	}
	return e, missing
}

var (
	sambaOnce   sync.Once
	sambaServer *Server
	sambaErr    error
)

// SharedSamba returns the Samba AD DC that scripts/test-ldap/samba.sh started
// for this run (realm EXAMPLE.COM, base DC=example,DC=com), seen through an
// in-process proxy that applies Active Directory's query limits Samba lacks
// (ADMaxPageSize entries per search or page, ADMaxValRange values per
// attribute: see sambaADLimitsProxy), so paging and range retrieval are
// exercised as on a real AD. The proxy lives as long as the test binary.
// URL and LDAPSURL point at the proxy; CAFile verifies both. Samba's own
// ports stay in $LDAPGATE_TEST_SAMBA_URL and $LDAPGATE_TEST_SAMBA_LDAPS_URL
// (e.g. for a baseline ldapsearch in a benchmark). Stop is nil: the script
// owns Samba.
//
// Fixtures (NewFixture) hold the common content plus two AD-only users,
// "outsider" and "primary" (see sambaLayout); SambaSetLocked locks a user
// out (bind 49 "data 775").
//
// The server also holds the read-only OU=big tree (BigSambaDirectory).
//
// Start it with
//
//	eval "$(scripts/test-ldap/samba.sh start /tmp/ldapgate-samba)"
func SharedSamba(t testing.TB) *Server {
	t.Helper()
	env, missing := sambaEnvFromGetenv(os.Getenv)
	if len(missing) > 0 {
		Missing(t, "Samba AD DC: %s unset (run eval \"$(scripts/test-ldap/samba.sh start DIR)\")",
			strings.Join(missing, ", "))
		return nil
	}
	sambaOnce.Do(func() { sambaServer, sambaErr = newSambaServer(env, os.Getenv(SambaEnvADLimits) != "0") })
	if sambaErr != nil {
		t.Fatalf("ldaptest: Samba AD DC from %s: %v", env.url, sambaErr)
	}
	s := *sambaServer // a copy: callers may not change the shared one
	return &s
}

// newSambaServer checks that Samba answers an admin bind and, with adLimits,
// starts the proxy in front of it.
func newSambaServer(env sambaEnv, adLimits bool) (*Server, error) {
	ops, err := newSambaOps(env)
	if err != nil {
		return nil, err
	}
	c, err := ops.dial()
	if err != nil {
		return nil, err
	}
	_ = c.Close()
	s := &Server{
		Flavor:        Samba,
		URL:           env.url,
		LDAPSURL:      env.ldapsURL,
		CAFile:        env.ca,
		BaseDN:        env.base,
		AdminDN:       env.adminDN,
		AdminPassword: env.adminPassword,
		ops:           ops,
	}
	if !adLimits {
		return s, nil
	}
	cert, err := tls.LoadX509KeyPair(env.cert, env.key)
	if err != nil {
		return nil, fmt.Errorf("load Samba's certificate for the proxy: %w", err)
	}
	p, err := startSambaADLimitsProxy(ops.upstreamAddr, ops.tls,
		&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	s.URL, s.LDAPSURL = p.url(), p.ldapsURL()
	return s, nil
}

// sambaOps seeds and changes fixtures on Samba over its own LDAPS port, not
// through the proxy: AD accepts unicodePwd only over an encrypted connection,
// and fixture writes should not depend on the code under test.
type sambaOps struct {
	upstreamAddr  string // host:port of Samba's LDAPS
	tls           *tls.Config
	adminDN       string
	adminPassword string
}

var _ flavorOps = (*sambaOps)(nil)

func newSambaOps(env sambaEnv) (*sambaOps, error) {
	u, err := url.Parse(env.ldapsURL)
	if err != nil || u.Scheme != "ldaps" || u.Host == "" {
		return nil, fmt.Errorf("%s=%q: want ldaps://HOST:PORT", sambaEnvLDAPSURL, env.ldapsURL)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "636"
	}
	pemData, err := os.ReadFile(env.ca)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("no certificate in %s", env.ca)
	}
	return &sambaOps{
		upstreamAddr:  net.JoinHostPort(host, port),
		tls:           &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12},
		adminDN:       env.adminDN,
		adminPassword: env.adminPassword,
	}, nil
}

// dial opens an admin connection to Samba's LDAPS port; the caller closes.
func (o *sambaOps) dial() (*ldap.Conn, error) {
	c, err := o.dialNoBind()
	if err != nil {
		return nil, err
	}
	if err := c.Bind(o.adminDN, o.adminPassword); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("bind %s at ldaps://%s: %w", o.adminDN, o.upstreamAddr, err)
	}
	return c, nil
}

// dialNoBind opens an anonymous connection to Samba's LDAPS port.
func (o *sambaOps) dialNoBind() (*ldap.Conn, error) {
	c, err := ldap.DialURL("ldaps://"+o.upstreamAddr,
		ldap.DialWithDialer(&net.Dialer{Timeout: harnessDialTimeout}), ldap.DialWithTLSConfig(o.tls))
	if err != nil {
		return nil, fmt.Errorf("dial ldaps://%s: %w", o.upstreamAddr, err)
	}
	c.SetTimeout(harnessOpTimeout)
	return c, nil
}

// with runs fn on a fresh admin connection and fails t on any error.
func (o *sambaOps) with(t testing.TB, fn func(c *ldap.Conn) error) {
	t.Helper()
	c, err := o.dial()
	if err != nil {
		t.Fatalf("ldaptest: samba: %v", err)
	}
	defer c.Close()
	if err := fn(c); err != nil {
		t.Fatalf("ldaptest: samba: %v", err)
	}
}
