package directory

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// replayConn is a net.Conn whose reads come from a fixed byte string (a
// server's answers) and whose writes are discarded.
type replayConn struct {
	net.Conn // nil: the methods below are all conn uses
	r        *bytes.Reader
}

func (c *replayConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *replayConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

func replay(data []byte) *conn {
	return newConn(&replayConn{r: bytes.NewReader(data)}, "ldap://fuzz", 0)
}

// FuzzWireResponses feeds arbitrary server bytes to every reading path of
// wire.go: a search (entries, references, done with controls), a simple
// bind and a StartTLS, each on a fresh connection whose first request has
// message id 1. Nothing may panic; an error closes the connection.
func FuzzWireResponses(f *testing.F) {
	seeds := [][][]byte{
		{userEntry(1, "alice", map[string][]string{"mail": {"a@example.com"}, "memberOf": {"cn=g1", "cn=g2"}}),
			reference(1, "ldap://other/dc=x"), done(1, 0, cookie("next"))},
		{done(1, ldap.LDAPResultSizeLimitExceeded)},
		{ldapResult(1, ldap.ApplicationBindResponse, 0, "")},
		{ldapResult(1, ldap.ApplicationBindResponse, ldap.LDAPResultInvalidCredentials, "80090308: data 52e")},
		{ldapResult(1, ldap.ApplicationExtendedResponse, 0, "")},
		{ldapResult(0, ldap.ApplicationExtendedResponse, ldap.LDAPResultUnavailable, "shutting down")},
		{userEntry(7, "other", nil), done(1, 0)},
		{{0x30, 0x84, 0x0f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01}}, // a 256 MiB length, then nothing
	}
	for _, s := range seeds {
		f.Add(bytes.Join(s, nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &ldap.SearchRequest{BaseDN: "dc=example,dc=com", Scope: ldap.ScopeWholeSubtree,
			Filter: "(objectClass=person)", Attributes: []string{"uid"}}
		if res, err := replay(data).Search(req); err == nil && res == nil {
			t.Fatal("Search: no result and no error")
		}
		_ = replay(data).SimpleBind("cn=svc", "pw")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = replay(data).StartTLS(ctx, &tls.Config{ServerName: "fuzz", MinVersion: tls.VersionTLS12})
	})
}

// FuzzDecodeEntry decodes arbitrary SearchResultEntry contents; values must
// lie within the input.
func FuzzDecodeEntry(f *testing.F) {
	whole := userEntry(1, "alice", map[string][]string{"cn": {"Alice"}, "objectGUID": {"\x00\x01\x02"}})
	// The protocolOp's contents: past SEQUENCE, messageID and the op's own header.
	m, _, err := replay(whole).readMessage()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m.op)
	f.Add([]byte{0x04, 0x00, 0x30, 0x00})
	f.Add([]byte{0x04, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, op []byte) {
		e, err := decodeEntry(op)
		if err != nil {
			return
		}
		n := len(e.DN)
		for _, a := range e.Attrs {
			n += len(a.Name)
			for _, v := range a.Vals {
				n += len(v)
			}
		}
		if n > len(op) {
			t.Fatalf("decoded %d bytes of names and values from %d bytes", n, len(op))
		}
	})
}

// TestLargeLengthAllocatesWithData: a message header announcing 256 MiB,
// followed by a few bytes, fails without allocating the announced size.
func TestLargeLengthAllocatesWithData(t *testing.T) {
	data := []byte{0x30, 0x84, 0x0f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 4 {
		if _, _, err := replay(data).readMessage(); err != io.ErrUnexpectedEOF {
			t.Fatalf("readMessage: %v, want unexpected EOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("4 reads of a 256 MiB header without its body allocated %d MiB", grew>>20)
	}
}
