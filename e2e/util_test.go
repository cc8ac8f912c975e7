package e2e

import (
	"io"
	"sync"

	"github.com/go-ldap/ldap/v3"
)

// syncWriter serialises writes from the app's logger and the test's reads.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func modifyMail(conn *ldap.Conn, dn, mail string) error {
	req := ldap.NewModifyRequest(dn, nil)
	req.Replace("mail", []string{mail})
	return conn.Modify(req)
}
