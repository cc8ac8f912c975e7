package ldaptest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Timeouts of the harness's own LDAP traffic: generous for a loaded CI box,
// short enough that a hung server fails the test instead of the whole run.
const (
	harnessDialTimeout = 5 * time.Second
	harnessOpTimeout   = 30 * time.Second
)

// AdminConn returns a connection to s.URL bound as AdminDN, closed when the
// test ends, for tests that change the directory in ways Fixture does not offer.
func (s *Server) AdminConn(t testing.TB) *ldap.Conn {
	t.Helper()
	c, err := s.dialAdmin()
	if err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// dialAdmin dials s.URL and binds as the admin; the caller closes.
func (s *Server) dialAdmin() (*ldap.Conn, error) {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: harnessDialTimeout}))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.URL, err)
	}
	c.SetTimeout(harnessOpTimeout)
	if err := c.Bind(s.AdminDN, s.AdminPassword); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("bind %s at %s: %w", s.AdminDN, s.URL, err)
	}
	return c, nil
}

// withAdmin runs fn on a fresh admin connection and fails t on any error.
func (s *Server) withAdmin(t testing.TB, fn func(c *ldap.Conn) error) {
	t.Helper()
	c, err := s.dialAdmin()
	if err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
	defer c.Close()
	if err := fn(c); err != nil {
		t.Fatalf("ldaptest: %v", err)
	}
}

// serverAdmin is flavorOps.admin for flavours whose fixtures are written
// through s.URL itself.
type serverAdmin struct{}

func (serverAdmin) admin(t testing.TB, s *Server, fn func(c *ldap.Conn) error) {
	t.Helper()
	s.withAdmin(t, fn)
}

// TLSConfig trusts s.CAFile only, as a client configured with tls.ca_file
// would; for tests dialing LDAPSURL or using StartTLS by hand. ServerName is
// set because go-ldap's StartTLS does not fill it from the URL.
func (s *Server) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	pemData, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatalf("ldaptest: read CA file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("ldaptest: no certificate in %s", s.CAFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// SetUserAttribute sets (value != "") or removes attribute attr of the
// entry whose uid is login, as an admin would in the directory: tests move
// users in and out of a directory's user_filter with it.
func (s *Server) SetUserAttribute(t testing.TB, login, attr, value string) {
	t.Helper()
	c := s.AdminConn(t)
	res, err := c.Search(ldap.NewSearchRequest(s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, 10, false,
		"(uid="+ldap.EscapeFilter(login)+")", []string{attr}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("find %s: %v", login, err)
	}
	e := res.Entries[0]
	m := ldap.NewModifyRequest(e.DN, nil)
	switch {
	case value != "":
		m.Replace(attr, []string{value})
	case len(e.GetAttributeValues(attr)) > 0:
		m.Delete(attr, nil)
	default:
		return
	}
	if err := c.Modify(m); err != nil {
		t.Fatalf("modify %s: %v", e.DN, err)
	}
}
