package directory

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
)

// The failures below need a server that misbehaves on purpose (no paging
// control, a cookie that never moves, an unsolicited disconnect), which no
// real directory does on demand: a scripted LDAP server answers instead.
// Real-server behaviour is covered by slapd_test.go and flavors_test.go.

// scriptedPage answers the n-th search request (0-based) of a connection.
type scriptedPage func(n int, id int64) [][]byte

func startScripted(t *testing.T, page scriptedPage) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, nc)
			mu.Unlock()
			wg.Go(func() { serveScripted(nc, page) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "ldap://" + ln.Addr().String()
}

func serveScripted(nc net.Conn, page scriptedPage) {
	defer nc.Close()
	// Requests are framed like responses: the client's reader parses them.
	r := newConn(nc, "", 0)
	searches := 0
	for {
		m, id, err := r.readMessage()
		if err != nil {
			return
		}
		var out [][]byte
		switch m.tag {
		case 0x60: // BindRequest
			out = [][]byte{ldapResult(int64(id), ldap.ApplicationBindResponse, 0, "")}
		case 0x63: // SearchRequest
			out = page(searches, int64(id))
			searches++
		default: // unbind and anything else: hang up
			return
		}
		for _, b := range out {
			if _, err := nc.Write(b); err != nil {
				return
			}
		}
	}
}

func envelope(id int64, op *ber.Packet, controls ...ldap.Control) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
	p.AppendChild(op)
	if len(controls) > 0 {
		cp := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "")
		for _, c := range controls {
			cp.AppendChild(c.Encode())
		}
		p.AppendChild(cp)
	}
	return p.Bytes()
}

func ldapResult(id int64, app ber.Tag, code int64, diag string, controls ...ldap.Control) []byte {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, app, nil, "")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, ""))
	return envelope(id, op, controls...)
}

func userEntry(id int64, uid string, attrs map[string][]string) []byte {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "uid="+uid+",dc=example,dc=com", ""))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	if attrs == nil {
		attrs = map[string][]string{}
	}
	attrs["uid"] = []string{uid}
	for name, vals := range attrs {
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, ""))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
		for _, v := range vals {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, ""))
		}
		a.AppendChild(set)
		list.AppendChild(a)
	}
	op.AppendChild(list)
	return envelope(id, op)
}

func reference(id int64, uri string) []byte {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultReference, nil, "")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, uri, ""))
	return envelope(id, op)
}

func done(id int64, code int64, controls ...ldap.Control) []byte {
	return ldapResult(id, ldap.ApplicationSearchResultDone, code, "scripted", controls...)
}

func cookie(c string) ldap.Control { return &ldap.ControlPaging{Cookie: []byte(c)} }

func TestPagedReadFailures(t *testing.T) {
	// noticeOfDisconnection is RFC 4511 §4.4.1's unsolicited notification.
	notice := func(int64) []byte {
		op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedResponse, nil, "")
		op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 52, ""))
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "shutting down", ""))
		return envelope(0, op)
	}
	for _, tc := range []struct {
		name  string
		page  scriptedPage
		class error
		kind  string
		users int // delivered before the failure
	}{
		{"complete, with a continuation reference", func(n int, id int64) [][]byte {
			if n == 0 {
				return [][]byte{userEntry(id, "a", nil), reference(id, "ldap://other/dc=x"), done(id, 0, cookie("p2"))}
			}
			return [][]byte{userEntry(id, "b", nil), done(id, 0, cookie(""))}
		}, nil, "", 2},
		{"page without a paging control", func(n int, id int64) [][]byte {
			// Checked before the page is handed over: nothing delivered.
			return [][]byte{userEntry(id, "a", nil), done(id, 0)}
		}, ErrIncompleteRead, KindMissingPage, 0},
		{"cookie that never moves", func(n int, id int64) [][]byte {
			if n == 0 {
				return [][]byte{userEntry(id, "a", nil), done(id, 0, cookie("same"))}
			}
			return [][]byte{done(id, 0, cookie("same"))}
		}, ErrIncompleteRead, KindStalledPage, 1},
		{"time limit on page 2", func(n int, id int64) [][]byte {
			if n == 0 {
				return [][]byte{userEntry(id, "a", nil), done(id, 0, cookie("p2"))}
			}
			return [][]byte{userEntry(id, "b", nil), done(id, 3)}
		}, ErrIncompleteRead, KindTimeLimit, 1},
		{"admin limit", func(n int, id int64) [][]byte { return [][]byte{done(id, 11)} }, ErrIncompleteRead, KindAdminLimit, 0},
		{"size limit", func(n int, id int64) [][]byte { return [][]byte{done(id, 4)} }, ErrIncompleteRead, KindSizeLimit, 0},
		{"referral result", func(n int, id int64) [][]byte { return [][]byte{done(id, 10)} }, ErrIncompleteRead, KindReferral, 0},
		{"busy", func(n int, id int64) [][]byte { return [][]byte{done(id, 51)} }, ErrUnavailable, KindBusy, 0},
		{"unavailable", func(n int, id int64) [][]byte { return [][]byte{done(id, 52)} }, ErrUnavailable, KindUnavailable, 0},
		{"notice of disconnection mid-read", func(n int, id int64) [][]byte {
			if n == 0 {
				return [][]byte{userEntry(id, "a", nil), done(id, 0, cookie("p2"))}
			}
			return [][]byte{notice(id)}
		}, ErrUnavailable, KindUnavailable, 1},
		{"connection dropped mid-page", func(n int, id int64) [][]byte {
			e := userEntry(id, "a", nil)
			return [][]byte{e[:len(e)/2]} // then serveScripted waits; client times out or sees EOF
		}, ErrUnavailable, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := startScripted(t, tc.page)
			l := openT(t, config.Directory{Name: "d", Type: config.TypeLDAP, URLs: []string{url},
				BaseDN: "dc=example,dc=com", BindDN: "cn=svc", BindPassword: "x", PageSize: 1,
				Timeout: config.Duration(500 * time.Millisecond)})
			n := 0
			err := l.ReadUsers(context.Background(), func(User) error { n++; return nil })
			if n != tc.users {
				t.Errorf("%d users delivered, want %d", n, tc.users)
			}
			if tc.class == nil {
				if err != nil {
					t.Fatalf("ReadUsers = %v", err)
				}
				return
			}
			var re *ReadError
			if !errors.As(err, &re) || !errors.Is(err, tc.class) || (tc.kind != "" && re.Kind != tc.kind) {
				t.Fatalf("ReadUsers = %v, want %v of kind %q", err, tc.class, tc.kind)
			}
		})
	}
}
