package directory

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// This file is ldapgate's own LDAP protocol layer for the directory client,
// and its scope is narrow on purpose. It frames LDAPMessages (definite-length
// BER only, as RFC 4511 §5.1 requires), sends simple bind, StartTLS, search
// and unbind requests (encoded with go-asn1-ber and go-ldap's filter
// compiler), decodes SearchResultEntry by hand and leaves results (bind,
// search done, extended) and controls to go-asn1-ber and go-ldap. It does
// not do SASL, referral chasing (references are counted and skipped), more
// than one outstanding operation per connection, or Abandon. Its input is
// untrusted — whatever a server an admin points ldapgate at sends: every
// length is checked against the bytes at hand, one message is bounded by
// maxMessage and its memory grows with the bytes received, and
// FuzzWireResponses / FuzzDecodeEntry (wire_fuzz_test.go) feed it arbitrary
// bytes.

// conn is one LDAP connection, used by one operation at a time (the pool
// hands it out exclusively; user binds get their own).
//
// Why not go-ldap's *ldap.Conn: its reader builds a full ber.Packet tree
// (with description strings) for every message and passes it through two
// goroutine hand-offs; reading 10,000 users cost 2.5x a paged ldapsearch,
// against issue 2's 1.25x. Requests, filters (ldap.CompileFilter), controls
// (ldap.ControlPaging, ldap.DecodeControl) and result codes (ldap.Error via
// ldap.GetLDAPError) still come from go-ldap; only the hot path, decoding
// SearchResultEntry, is done here, straight from one buffer per message.
type conn struct {
	url string

	mu      sync.Mutex // guards nc swaps (StartTLS) against Close
	nc      net.Conn
	br      *bufio.Reader
	closed  atomic.Bool
	timeout time.Duration

	msgID int32
	buf   []byte // the current message, reused
}

func newConn(nc net.Conn, url string, timeout time.Duration) *conn {
	return &conn{url: url, nc: nc, br: bufio.NewReaderSize(nc, 64<<10), timeout: timeout}
}

// IsClosing reports whether the connection was closed or broke; it is
// never used again then.
func (c *conn) IsClosing() bool { return c.closed.Load() }

// Close closes the socket; safe from any goroutine (ctx watchers) and more
// than once. A blocked read or write returns at once.
func (c *conn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.mu.Lock()
	nc := c.nc
	c.mu.Unlock()
	return nc.Close()
}

// unbindClose says goodbye politely (idle connections only: nothing else
// may be writing) and closes.
func (c *conn) unbindClose() {
	if !c.closed.Load() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.nc.Write(c.envelope(ber.Encode(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationUnbindRequest, nil, "Unbind"), nil))
	}
	_ = c.Close()
}

// broken closes the connection after an I/O or protocol error (the stream
// position is unknown) and returns err as an ldap.ErrorNetwork error.
func (c *conn) broken(err error) error {
	_ = c.Close()
	var le *ldap.Error
	if errors.As(err, &le) {
		return err
	}
	return ldap.NewError(ldap.ErrorNetwork, err)
}

func (c *conn) envelope(op *ber.Packet, controls []ldap.Control) []byte {
	c.msgID++
	if c.msgID <= 0 { // 1..2^31-1 (RFC 4511 §4.1.1.1); 0 is for notices
		c.msgID = 1
	}
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(c.msgID), "MessageID"))
	p.AppendChild(op)
	if len(controls) > 0 {
		cp := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, ctl := range controls {
			cp.AppendChild(ctl.Encode())
		}
		p.AppendChild(cp)
	}
	return p.Bytes()
}

// send writes one request and arms the operation timeout: from here until
// the last response of this request, at most c.timeout may pass.
func (c *conn) send(op *ber.Packet, controls []ldap.Control) error {
	if c.closed.Load() {
		return ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: connection closed"))
	}
	msg := c.envelope(op, controls)
	if c.timeout > 0 {
		_ = c.nc.SetDeadline(time.Now().Add(c.timeout))
	}
	if _, err := c.nc.Write(msg); err != nil {
		return c.broken(err)
	}
	return nil
}

// message is one response: its protocolOp tag and bytes, and the whole
// message for ber decoding when needed. Valid until the next read.
type message struct {
	tag  byte   // protocolOp's identifier octet, e.g. 0x64 SearchResultEntry
	op   []byte // protocolOp contents
	ctl  []byte // controls [0] contents, if any
	full []byte // the whole LDAPMessage
}

// BER identifier octets of the responses we read.
const (
	tagBindResponse     = 0x61 // [APPLICATION 1] constructed
	tagSearchEntry      = 0x64 // [APPLICATION 4]
	tagSearchDone       = 0x65 // [APPLICATION 5]
	tagSearchReference  = 0x73 // [APPLICATION 19]
	tagExtendedResponse = 0x78 // [APPLICATION 24]
	tagIntermediate     = 0x79 // [APPLICATION 25]
	tagControls         = 0xa0 // [0] constructed
)

// maxMessage bounds one response (a group with many members can be
// megabytes; AD caps values per read at 1500 anyway).
const maxMessage = 256 << 20

// growLimit: messages up to this size are read into a buffer allocated at
// once, and the buffer is kept for the next message.
const growLimit = 1 << 20

// read returns the next response to the current request. Messages for other
// ids are skipped; id 0 is an unsolicited notification (RFC 4511 §4.4,
// e.g. Notice of Disconnection) and ends the connection.
func (c *conn) read() (message, error) {
	for {
		m, id, err := c.readMessage()
		if err != nil {
			return message{}, c.broken(err)
		}
		if id == 0 {
			return message{}, c.broken(fmt.Errorf("ldap: unsolicited notification from server: %w", ldap.GetLDAPError(decodeFull(m.full))))
		}
		if id == c.msgID {
			return m, nil
		}
	}
}

func (c *conn) readMessage() (message, int32, error) {
	// Header: SEQUENCE, then a definite length (RFC 4511 §5.1: no
	// indefinite forms).
	hdr := c.buf[:0]
	tag, err := c.br.ReadByte()
	if err != nil {
		return message{}, 0, err
	}
	if tag != 0x30 {
		return message{}, 0, fmt.Errorf("ldap: message starts with 0x%02x, not SEQUENCE", tag)
	}
	hdr = append(hdr, tag)
	l0, err := c.br.ReadByte()
	if err != nil {
		return message{}, 0, err
	}
	hdr = append(hdr, l0)
	n := int(l0)
	if l0&0x80 != 0 {
		k := int(l0 & 0x7f)
		if k == 0 || k > 4 {
			return message{}, 0, fmt.Errorf("ldap: bad length form 0x%02x", l0)
		}
		n = 0
		for range k {
			b, err := c.br.ReadByte()
			if err != nil {
				return message{}, 0, err
			}
			hdr = append(hdr, b)
			n = n<<8 | int(b)
		}
	}
	if n > maxMessage {
		return message{}, 0, fmt.Errorf("ldap: %d-byte message exceeds %d", n, maxMessage)
	}
	h := len(hdr)
	var full []byte
	if n <= growLimit || cap(hdr) >= h+n {
		if cap(hdr) < h+n {
			nb := make([]byte, h, h+n)
			copy(nb, hdr)
			hdr = nb
		}
		full = hdr[:h+n]
		if _, err := io.ReadFull(c.br, full[h:]); err != nil {
			return message{}, 0, err
		}
	} else {
		// A large message grows with the bytes that arrive: a length
		// alone, from any server an admin points ldapgate at, must not
		// cost maxMessage of memory per connection.
		b := bytes.NewBuffer(hdr)
		if _, err := io.CopyN(b, c.br, int64(n)); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return message{}, 0, err
		}
		full = b.Bytes()
	}
	if cap(full) <= growLimit { // keep the buffer unless one huge message grew it
		c.buf = full[:0]
	}

	body := full[h:]
	t, idBytes, rest, err := tlv(body)
	if err != nil || t != 0x02 || len(idBytes) == 0 || len(idBytes) > 4 {
		return message{}, 0, fmt.Errorf("ldap: bad messageID")
	}
	var id int32
	for _, b := range idBytes {
		id = id<<8 | int32(b)
	}
	opTag, op, rest, err := tlv(rest)
	if err != nil {
		return message{}, 0, err
	}
	m := message{tag: opTag, op: op, full: full}
	if len(rest) > 0 {
		t, ctl, _, err := tlv(rest)
		if err == nil && t == tagControls {
			m.ctl = ctl
		}
	}
	return m, id, nil
}

// tlv splits one BER element off b: identifier octet, contents, remainder.
// Only low-tag-number, definite-length forms (all LDAP uses).
func tlv(b []byte) (tag byte, val, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, errors.New("ldap: truncated element")
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, errors.New("ldap: high tag number form")
	}
	n, i := int(b[1]), 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return 0, nil, nil, errors.New("ldap: bad length")
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		i += k
	}
	if n < 0 || len(b)-i < n {
		return 0, nil, nil, errors.New("ldap: truncated element")
	}
	return tag, b[i : i+n], b[i+n:], nil
}

func decodeFull(b []byte) *ber.Packet {
	p, err := ber.DecodePacketErr(bytes.Clone(b))
	if err != nil {
		return nil
	}
	return p
}

// result turns a response with an LDAPResult (bind, search done, extended)
// into go-ldap's error (nil for success) and its controls.
func (m message) result() (error, []ldap.Control) {
	p := decodeFull(m.full)
	if p == nil {
		return ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: malformed result")), nil
	}
	var controls []ldap.Control
	if len(p.Children) > 2 {
		for _, child := range p.Children[2].Children {
			if ctl, err := ldap.DecodeControl(child); err == nil {
				controls = append(controls, ctl)
			}
		}
	}
	return ldap.GetLDAPError(p), controls
}

// SimpleBind authenticates the connection (RFC 4511 §4.2, version 3).
func (c *conn) SimpleBind(dn, password string) error {
	_, err := c.Bind(dn, password, nil)
	return err
}

// Bind is SimpleBind with request controls; it returns the response's
// controls, also when the bind failed (a password policy control says
// why).
func (c *conn) Bind(dn, password string, controls []ldap.Control) ([]ldap.Control, error) {
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "Bind Request")
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "Version"))
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "User Name"))
	req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, "Password"))
	if err := c.send(req, controls); err != nil {
		return nil, err
	}
	m, err := c.read()
	if err != nil {
		return nil, err
	}
	if m.tag != tagBindResponse {
		return nil, c.broken(fmt.Errorf("ldap: bind answered with tag 0x%02x", m.tag))
	}
	err, ctls := m.result()
	return ctls, err
}

// PasswordModify changes the bound user's own password (RFC 3062, no
// userIdentity: the identity of the connection), proving the old one.
func (c *conn) PasswordModify(oldPassword, newPassword string, controls []ldap.Control) ([]ldap.Control, error) {
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Password Modify")
	req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.4203.1.11.1", "Extended Request Name"))
	val := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "PasswdModifyRequestValue")
	val.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 1, oldPassword, "Old Password"))
	val.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 2, newPassword, "New Password"))
	ev := ber.Encode(ber.ClassContext, ber.TypePrimitive, 1, nil, "Extended Request Value")
	ev.AppendChild(val)
	req.AppendChild(ev)
	if err := c.send(req, controls); err != nil {
		return nil, err
	}
	m, err := c.read()
	if err != nil {
		return nil, err
	}
	if m.tag != tagExtendedResponse {
		return nil, c.broken(fmt.Errorf("ldap: password modify answered with tag 0x%02x", m.tag))
	}
	err, ctls := m.result()
	return ctls, err
}

// tagModifyResponse is ModifyResponse, [APPLICATION 7].
const tagModifyResponse = 0x67

// Modify applies one modify request (RFC 4511 §4.6).
func (c *conn) Modify(req *ldap.ModifyRequest) error {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationModifyRequest, nil, "Modify Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, req.DN, "DN"))
	changes := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Changes")
	for _, ch := range req.Changes {
		p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Change")
		p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(ch.Operation), "Operation"))
		a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Modification")
		a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, ch.Modification.Type, "Type"))
		vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "Values")
		for _, v := range ch.Modification.Vals {
			vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "Value"))
		}
		a.AppendChild(vals)
		p.AppendChild(a)
		changes.AppendChild(p)
	}
	op.AppendChild(changes)
	if err := c.send(op, req.Controls); err != nil {
		return err
	}
	m, err := c.read()
	if err != nil {
		return err
	}
	if m.tag != tagModifyResponse {
		return c.broken(fmt.Errorf("ldap: modify answered with tag 0x%02x", m.tag))
	}
	err, _ = m.result()
	return err
}

// isTLS reports whether the connection is encrypted (ldaps, or after
// StartTLS).
func (c *conn) isTLS() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.nc.(*tls.Conn)
	return ok
}

// StartTLS upgrades the connection (RFC 4511 §4.14); ctx bounds the
// handshake.
func (c *conn) StartTLS(ctx context.Context, tc *tls.Config) error {
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Start TLS")
	req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.1466.20037", "TLS Extended Command"))
	if err := c.send(req, nil); err != nil {
		return err
	}
	m, err := c.read()
	if err != nil {
		return err
	}
	if m.tag != tagExtendedResponse {
		return c.broken(fmt.Errorf("ldap: StartTLS answered with tag 0x%02x", m.tag))
	}
	if err, _ := m.result(); err != nil {
		return err
	}
	if c.br.Buffered() > 0 {
		return c.broken(errors.New("ldap: data after the StartTLS response, before the handshake"))
	}
	t := tls.Client(c.nc, tc)
	if err := t.HandshakeContext(ctx); err != nil {
		return c.broken(fmt.Errorf("TLS handshake failed: %w", err))
	}
	c.mu.Lock()
	c.nc = t
	c.mu.Unlock()
	c.br.Reset(t)
	if c.closed.Load() { // closed while we swapped: close the new one too
		_ = t.Close()
	}
	return nil
}

// entry is a search result entry. Attribute values alias one copy of the
// message, made per entry, so an entry stays valid after later reads.
type entry struct {
	DN    string
	Attrs []attribute
}

type attribute struct {
	Name string
	Vals [][]byte
}

func (e *entry) raw(name string) [][]byte {
	for i := range e.Attrs {
		if strings.EqualFold(e.Attrs[i].Name, name) {
			return e.Attrs[i].Vals
		}
	}
	return nil
}

// first is the first value of name, as a string ("" if none).
func (e *entry) first(name string) string { return string(e.firstRaw(name)) }

func (e *entry) firstRaw(name string) []byte {
	if v := e.raw(name); len(v) > 0 {
		return v[0]
	}
	return nil
}

func (e *entry) values(name string) []string {
	raw := e.raw(name)
	if len(raw) == 0 {
		return nil
	}
	out := make([]string, len(raw))
	for i, v := range raw {
		out[i] = string(v)
	}
	return out
}

// decodeEntry parses SearchResultEntry contents:
// objectName LDAPDN, attributes SEQUENCE OF SEQUENCE { type, vals SET OF value }.
func decodeEntry(op []byte) (*entry, error) {
	op = bytes.Clone(op) // the one copy values alias
	t, dn, rest, err := tlv(op)
	if err != nil || t != 0x04 {
		return nil, errors.New("ldap: entry without objectName")
	}
	t, attrs, _, err := tlv(rest)
	if err != nil || t != 0x30 {
		return nil, errors.New("ldap: entry without attributes")
	}
	e := &entry{DN: string(dn)}
	for len(attrs) > 0 {
		var pa []byte
		if t, pa, attrs, err = tlv(attrs); err != nil || t != 0x30 {
			return nil, errors.New("ldap: bad PartialAttribute")
		}
		t, name, vals, err := tlv(pa)
		if err != nil || t != 0x04 {
			return nil, errors.New("ldap: bad attribute type")
		}
		if t, vals, _, err = tlv(vals); err != nil || t != 0x31 {
			return nil, errors.New("ldap: bad attribute values")
		}
		a := attribute{Name: string(name)}
		for len(vals) > 0 {
			var v []byte
			if t, v, vals, err = tlv(vals); err != nil || t != 0x04 {
				return nil, errors.New("ldap: bad attribute value")
			}
			a.Vals = append(a.Vals, v)
		}
		e.Attrs = append(e.Attrs, a)
	}
	return e, nil
}

// searchResult is one request's answer: entries, the number of skipped
// continuation references (only counted, for the log), and the controls of
// SearchResultDone.
type searchResult struct {
	Entries    []*entry
	References int
	Controls   []ldap.Control
}

// Search runs one search request to its SearchResultDone. Like go-ldap, on
// a non-success result it returns the entries received with the error.
func (c *conn) Search(req *ldap.SearchRequest) (*searchResult, error) {
	if err := c.sendSearch(req); err != nil {
		return nil, err
	}
	return c.searchResult()
}

// sendSearch sends a search request; searchResult reads its answer. Split
// so that a paged read can ask for the next page before it hands the
// current one to its caller.
func (c *conn) sendSearch(req *ldap.SearchRequest) error {
	filter, err := ldap.CompileFilter(req.Filter)
	if err != nil {
		return err
	}
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, req.BaseDN, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(req.Scope), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(req.DerefAliases), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(req.SizeLimit), "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(req.TimeLimit), "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, req.TypesOnly, "Types Only"))
	op.AppendChild(filter)
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range req.Attributes {
		attrs.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	op.AppendChild(attrs)
	return c.send(op, req.Controls)
}

// searchResult reads the answer to the search sendSearch sent last.
func (c *conn) searchResult() (*searchResult, error) {
	res := &searchResult{}
	for {
		m, err := c.read()
		if err != nil {
			return res, err
		}
		switch m.tag {
		case tagSearchEntry:
			e, err := decodeEntry(m.op)
			if err != nil {
				return res, c.broken(err)
			}
			res.Entries = append(res.Entries, e)
		case tagSearchReference:
			res.References++
		case tagIntermediate:
			// Not used by plain searches; nothing to act on.
		case tagSearchDone:
			err, controls := m.result()
			res.Controls = controls
			return res, err
		default:
			return res, c.broken(fmt.Errorf("ldap: unexpected response tag 0x%02x in a search", m.tag))
		}
	}
}
