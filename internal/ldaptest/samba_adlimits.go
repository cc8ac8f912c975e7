package ldaptest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Active Directory's default LDAP query policy (MS-ADTS 3.1.1.3.4.6,
// lDAPAdminLimits): at most MaxPageSize entries per search or page, at most
// MaxValRange values of one attribute per read.
const (
	ADMaxPageSize = 1000
	ADMaxValRange = 1500
)

// sambaOIDStartTLS is the StartTLS extended operation (RFC 4511 4.14).
const sambaOIDStartTLS = "1.3.6.1.4.1.1466.20037"

// sambaADLimitsProxy sits between the tests and Samba and applies AD's query
// policy, because Samba 4.17 applies none of it: it returns every entry of a
// non-paged search (ignoring even the request's sizeLimit), pages of any
// size, and every value of a large multi-valued attribute unless the client
// itself asks for a range (its ranged_results module only answers explicit
// "member;range=..." requests). Clients written against Samba alone would
// pass tests and then lose users and group members on a real AD. The proxy
// changes only what AD would:
//
//   - a search without the paged-results control returns at most
//     min(sizeLimit, ADMaxPageSize) entries, then sizeLimitExceeded (4);
//   - a paged search asking for more than ADMaxPageSize per page gets pages
//     of ADMaxPageSize;
//   - an attribute with more than ADMaxValRange values comes back as its
//     first ADMaxValRange values named "attr;range=0-1499" (or, for an
//     explicit "attr;range=N-*" request, "attr;range=N-<N+1499>").
//
// Everything else passes through unchanged, including Samba's own bind
// errors. The proxy speaks LDAPS to Samba, so an upstream Samba always sees
// an encrypted connection; towards the client it offers plain LDAP with
// StartTLS and LDAPS, both with Samba's own certificate.
type sambaADLimitsProxy struct {
	upstream string      // host:port of Samba's LDAPS
	upTLS    *tls.Config // trusts the test CA
	srvTLS   *tls.Config // Samba's certificate, for LDAPS and StartTLS

	plain, secure net.Listener

	mu       sync.Mutex
	closed   bool
	sessions map[*sambaADSession]struct{}
	wg       sync.WaitGroup
}

// startSambaADLimitsProxy listens on two ephemeral loopback ports (plain and
// LDAPS) and serves until close.
func startSambaADLimitsProxy(upstream string, upTLS, srvTLS *tls.Config) (*sambaADLimitsProxy, error) {
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ad-limits proxy: listen: %w", err)
	}
	secure, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	if err != nil {
		_ = plain.Close()
		return nil, fmt.Errorf("ad-limits proxy: listen tls: %w", err)
	}
	p := &sambaADLimitsProxy{
		upstream: upstream, upTLS: upTLS, srvTLS: srvTLS,
		plain: plain, secure: secure,
		sessions: map[*sambaADSession]struct{}{},
	}
	p.wg.Add(2)
	go p.serve(plain, false)
	go p.serve(secure, true)
	return p, nil
}

func (p *sambaADLimitsProxy) url() string      { return "ldap://" + p.plain.Addr().String() }
func (p *sambaADLimitsProxy) ldapsURL() string { return "ldaps://" + p.secure.Addr().String() }

// close stops accepting, cuts every open session and waits for their
// goroutines.
func (p *sambaADLimitsProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	_ = p.plain.Close()
	_ = p.secure.Close()
	for s := range p.sessions {
		s.shut()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *sambaADLimitsProxy) serve(l net.Listener, isTLS bool) {
	defer p.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed
		}
		up, err := tls.DialWithDialer(&net.Dialer{Timeout: harnessDialTimeout}, "tcp", p.upstream, p.upTLS)
		if err != nil {
			_ = c.Close()
			continue
		}
		s := &sambaADSession{p: p, client: c, up: up, isTLS: isTLS, searches: map[int64]*sambaADSearch{}}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			return
		}
		p.sessions[s] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go s.clientToServer()
		go s.serverToClient()
	}
}

// sambaADSession is one client connection and its own upstream connection.
type sambaADSession struct {
	p     *sambaADLimitsProxy
	up    net.Conn
	isTLS bool

	// wmu serialises writes to the client and the swap to TLS after StartTLS.
	wmu    sync.Mutex
	client net.Conn

	mu       sync.Mutex
	searches map[int64]*sambaADSearch // by message ID
	once     sync.Once
}

// sambaADSearch tracks one non-paged search to cut it at its limit.
type sambaADSearch struct {
	limit    int
	sent     int
	exceeded bool
}

// shut closes both sides; either loop ending ends the session.
func (s *sambaADSession) shut() {
	s.once.Do(func() {
		s.wmu.Lock()
		_ = s.client.Close()
		s.wmu.Unlock()
		_ = s.up.Close()
	})
}

func (s *sambaADSession) done() {
	s.shut()
	s.p.mu.Lock()
	delete(s.p.sessions, s)
	s.p.mu.Unlock()
	s.p.wg.Done()
}

func (s *sambaADSession) writeClient(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.client.SetWriteDeadline(time.Now().Add(harnessOpTimeout))
	_, err := s.client.Write(b)
	return err
}

func (s *sambaADSession) clientToServer() {
	defer s.done()
	s.wmu.Lock()
	r := bufio.NewReader(s.client)
	s.wmu.Unlock()
	for {
		pkt, err := ber.ReadPacket(r)
		if err != nil {
			return
		}
		if len(pkt.Children) < 2 {
			return // not an LDAPMessage
		}
		id, _ := pkt.Children[0].Value.(int64)
		op := pkt.Children[1]
		switch {
		case op.ClassType == ber.ClassApplication && op.Tag == ldap.ApplicationSearchRequest:
			s.limitSearch(id, pkt)
		case op.ClassType == ber.ClassApplication && op.Tag == ldap.ApplicationExtendedRequest &&
			len(op.Children) > 0 && string(op.Children[0].Data.Bytes()) == sambaOIDStartTLS:
			// Answered here: the client's TLS ends at the proxy, whose
			// upstream is LDAPS already.
			if r.Buffered() > 0 {
				return // data after StartTLS before its response: protocol error
			}
			tr, ok := s.startTLS(id)
			if !ok {
				return
			}
			r = tr
			continue
		}
		_ = s.up.SetWriteDeadline(time.Now().Add(harnessOpTimeout))
		if _, err := s.up.Write(pkt.Bytes()); err != nil {
			return
		}
	}
}

// startTLS answers a StartTLS request and upgrades the client connection; it
// returns the reader of the TLS stream.
func (s *sambaADSession) startTLS(id int64) (*bufio.Reader, bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	code := ldap.LDAPResultSuccess
	if s.isTLS {
		code = ldap.LDAPResultOperationsError // RFC 4511 4.14.2: TLS already established
	}
	resp := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAPMessage")
	resp.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "id"))
	ext := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedResponse, nil, "ExtendedResponse")
	ext.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "resultCode"))
	ext.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	ext.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnosticMessage"))
	resp.AppendChild(ext)
	_ = s.client.SetWriteDeadline(time.Now().Add(harnessOpTimeout))
	if _, err := s.client.Write(resp.Bytes()); err != nil {
		return nil, false
	}
	if s.isTLS {
		return bufio.NewReader(s.client), true
	}
	tc := tls.Server(s.client, s.p.srvTLS)
	_ = tc.SetDeadline(time.Now().Add(harnessDialTimeout))
	if err := tc.Handshake(); err != nil {
		return nil, false
	}
	_ = tc.SetDeadline(time.Time{})
	s.client, s.isTLS = tc, true
	return bufio.NewReader(tc), true
}

// limitSearch registers a non-paged search's entry limit, or lowers a paged
// search's page size to ADMaxPageSize.
func (s *sambaADSession) limitSearch(id int64, pkt *ber.Packet) {
	op := pkt.Children[1]
	if len(pkt.Children) > 2 {
		for _, ctrl := range pkt.Children[2].Children {
			if len(ctrl.Children) > 0 && string(ctrl.Children[0].Data.Bytes()) == ldap.ControlTypeDirSync {
				// AD hands DirSync results out in batches flagged "more
				// data", never as sizeLimitExceeded; Samba sends all of
				// them at once, which a client reads the same way.
				return
			}
			if len(ctrl.Children) == 0 || string(ctrl.Children[0].Data.Bytes()) != ldap.ControlTypePaging {
				continue
			}
			val := ctrl.Children[len(ctrl.Children)-1]
			if len(ctrl.Children) < 2 || val.Tag != ber.TagOctetString {
				return
			}
			inner, err := ber.DecodePacketErr(val.Data.Bytes())
			if err != nil || len(inner.Children) != 2 {
				return
			}
			if size, _ := inner.Children[0].Value.(int64); size > ADMaxPageSize {
				cookie := inner.Children[1].Data.Bytes()
				nv := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "pagedResults")
				nv.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(ADMaxPageSize), "size"))
				nv.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, string(cookie), "cookie"))
				val.Data.Reset()
				val.Data.Write(nv.Bytes())
				berRebuild(pkt)
			}
			return
		}
	}
	limit := ADMaxPageSize
	if len(op.Children) > 3 {
		if sl, _ := op.Children[3].Value.(int64); sl > 0 && sl < int64(limit) {
			limit = int(sl)
		}
	}
	s.mu.Lock()
	s.searches[id] = &sambaADSearch{limit: limit}
	s.mu.Unlock()
}

func (s *sambaADSession) serverToClient() {
	defer s.done()
	r := bufio.NewReader(s.up)
	for {
		pkt, err := ber.ReadPacket(r)
		if err != nil {
			return
		}
		if len(pkt.Children) < 2 {
			return
		}
		id, _ := pkt.Children[0].Value.(int64)
		op := pkt.Children[1]
		if op.ClassType == ber.ClassApplication {
			switch op.Tag {
			case ldap.ApplicationSearchResultEntry:
				s.mu.Lock()
				st := s.searches[id]
				drop := false
				if st != nil {
					if st.sent >= st.limit {
						st.exceeded, drop = true, true
					} else {
						st.sent++
					}
				}
				s.mu.Unlock()
				if drop {
					continue
				}
				if sambaLimitValues(op) {
					berRebuild(pkt)
				}
			case ldap.ApplicationSearchResultDone:
				s.mu.Lock()
				st := s.searches[id]
				delete(s.searches, id)
				s.mu.Unlock()
				if st != nil && st.exceeded && len(op.Children) >= 3 {
					op.Children[0] = ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated,
						int64(ldap.LDAPResultSizeLimitExceeded), "resultCode")
					op.Children[2] = ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString,
						"Size limit exceeded (ldaptest AD limits proxy: MaxPageSize "+strconv.Itoa(ADMaxPageSize)+")",
						"diagnosticMessage")
					berRebuild(pkt)
				}
			}
		}
		if err := s.writeClient(pkt.Bytes()); err != nil {
			return
		}
	}
}

// sambaLimitValues cuts every attribute of a SearchResultEntry holding more
// than ADMaxValRange values to its first ADMaxValRange, renamed with the
// range AD would name; it reports whether it changed anything.
func sambaLimitValues(entry *ber.Packet) bool {
	if len(entry.Children) < 2 {
		return false
	}
	changed := false
	for i, attr := range entry.Children[1].Children {
		if len(attr.Children) < 2 || len(attr.Children[1].Children) <= ADMaxValRange {
			continue
		}
		name := string(attr.Children[0].Data.Bytes())
		low := 0
		base := name
		if b, opt, ok := strings.Cut(name, ";"); ok && strings.HasPrefix(strings.ToLower(opt), "range=") {
			from, _, _ := strings.Cut(opt[len("range="):], "-")
			n, err := strconv.Atoi(from)
			if err != nil {
				continue
			}
			base, low = b, n
		}
		na := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "PartialAttribute")
		na.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString,
			fmt.Sprintf("%s;range=%d-%d", base, low, low+ADMaxValRange-1), "type"))
		vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		for _, v := range attr.Children[1].Children[:ADMaxValRange] {
			vals.AppendChild(v)
		}
		na.AppendChild(vals)
		entry.Children[1].Children[i] = na
		changed = true
	}
	return changed
}

// berRebuild re-encodes every constructed packet's content from its
// children: asn1-ber keeps a constructed packet's bytes in Data, filled once
// when children are appended, so an edit below would otherwise not show.
func berRebuild(p *ber.Packet) {
	if p.TagType != ber.TypeConstructed {
		return
	}
	p.Data.Reset()
	for _, c := range p.Children {
		berRebuild(c)
		p.Data.Write(c.Bytes())
	}
}
