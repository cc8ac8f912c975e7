package demo

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/jimlambrt/gldap"
)

// entry is one object of the embedded directory.
type entry struct {
	dn    string
	attrs map[string][]string // keys lower-cased
}

func (e *entry) get(attr string) []string { return e.attrs[strings.ToLower(attr)] }

// ldapServer is the demo's in-process directory: simple bind and search
// over a fixed tree, enough for ldapgate's real directory client (paged
// searches included: everything fits in one page, answered with an empty
// cookie as RFC 2696 requires).
type ldapServer struct {
	srv     *gldap.Server
	entries []*entry
	// passwords by lower-cased DN; the disabled user has none usable.
	passwords map[string]string

	mu    sync.Mutex
	bound map[int]bool // connection id → bound as someone
}

func newLDAPServer(entries []*entry, passwords map[string]string, log *slog.Logger) (*ldapServer, error) {
	s := &ldapServer{entries: entries, passwords: passwords, bound: map[int]bool{}}
	srv, err := gldap.NewServer(gldap.WithDisablePanicRecovery())
	if err != nil {
		return nil, fmt.Errorf("demo directory: %w", err)
	}
	mux, err := gldap.NewMux()
	if err != nil {
		return nil, fmt.Errorf("demo directory: %w", err)
	}
	if err := mux.Bind(s.bind); err != nil {
		return nil, err
	}
	if err := mux.Search(s.search); err != nil {
		return nil, err
	}
	if err := mux.ExtendedOperation(s.unsupported, gldap.ExtendedOperationStartTLS); err != nil {
		return nil, err
	}
	// gldap hands handlers no request value, so the demo cannot take a
	// Password Modify (RFC 3062): it says so in words, which the login
	// page's change form shows (SPEC §13: the directory's reason).
	if err := mux.ExtendedOperation(func(w *gldap.ResponseWriter, r *gldap.Request) {
		resp := r.NewExtendedResponse(gldap.WithResponseCode(gldap.ResultUnwillingToPerform))
		resp.SetDiagnosticMessage("the demo directory does not change passwords")
		_ = w.Write(resp)
	}, gldap.ExtendedOperationPasswordModify); err != nil {
		return nil, err
	}
	if err := srv.Router(mux); err != nil {
		return nil, err
	}
	s.srv = srv
	return s, nil
}

// serve listens on addr (host:port, port 0 for any) and returns the bound
// address once the server accepts connections.
func (s *ldapServer) serve(addr string) (string, <-chan error, error) {
	// gldap binds the listener itself; find a free port first.
	if strings.HasSuffix(addr, ":0") {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return "", nil, err
		}
		addr = l.Addr().String()
		l.Close()
	}
	done := make(chan error, 1)
	go func() { done <- s.srv.Run(addr) }()
	for !s.srv.Ready() {
		select {
		case err := <-done:
			return "", nil, fmt.Errorf("demo directory: %w", err)
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return addr, done, nil
}

func (s *ldapServer) stop() error { return s.srv.Stop() }

func (s *ldapServer) unsupported(w *gldap.ResponseWriter, r *gldap.Request) {
	_ = w.Write(r.NewExtendedResponse(gldap.WithResponseCode(gldap.ResultUnwillingToPerform)))
}

func (s *ldapServer) bind(w *gldap.ResponseWriter, r *gldap.Request) {
	resp := r.NewBindResponse(gldap.WithResponseCode(gldap.ResultInvalidCredentials))
	defer func() { _ = w.Write(resp) }()
	m, err := r.GetSimpleBindMessage()
	if err != nil {
		resp.SetResultCode(gldap.ResultAuthMethodNotSupported)
		return
	}
	want, ok := s.passwords[strings.ToLower(m.UserName)]
	if !ok || m.Password == "" ||
		subtle.ConstantTimeCompare([]byte(want), []byte(m.Password)) != 1 {
		return
	}
	s.mu.Lock()
	s.bound[r.ConnectionID()] = true
	s.mu.Unlock()
	resp.SetResultCode(gldap.ResultSuccess)
}

func (s *ldapServer) search(w *gldap.ResponseWriter, r *gldap.Request) {
	done := r.NewSearchDoneResponse(gldap.WithResponseCode(gldap.ResultSuccess))
	defer func() { _ = w.Write(done) }()
	s.mu.Lock()
	bound := s.bound[r.ConnectionID()]
	s.mu.Unlock()
	if !bound {
		done.SetResultCode(gldap.ResultInsufficientAccessRights)
		return
	}
	m, err := r.GetSearchMessage()
	if err != nil {
		done.SetResultCode(gldap.ResultProtocolError)
		return
	}
	f, err := ldap.CompileFilter(m.Filter)
	if err != nil {
		done.SetResultCode(gldap.ResultFilterError)
		return
	}
	base := strings.ToLower(m.BaseDN)
	found := false
	for _, e := range s.entries {
		dn := strings.ToLower(e.dn)
		inScope := false
		switch m.Scope {
		case gldap.BaseObject:
			inScope = dn == base
		case gldap.SingleLevel:
			inScope = strings.HasSuffix(dn, ","+base) && !strings.Contains(strings.TrimSuffix(dn, ","+base), ",")
		default:
			inScope = dn == base || strings.HasSuffix(dn, ","+base)
		}
		if dn == base {
			found = true
		}
		if !inScope || !matches(f, e) {
			continue
		}
		res := r.NewSearchResponseEntry(e.dn)
		for name, vals := range e.attrs {
			if wanted(m.Attributes, name) {
				res.AddAttribute(name, vals)
			}
		}
		if err := w.Write(res); err != nil {
			return
		}
	}
	if !found {
		done.SetResultCode(gldap.ResultNoSuchObject)
		return
	}
	for _, c := range m.Controls {
		if _, ok := c.(*gldap.ControlPaging); ok {
			// One page holds everything: an empty cookie ends the paging.
			done.SetControls(&gldap.ControlPaging{})
		}
	}
}

func wanted(attrs []string, name string) bool {
	if len(attrs) == 0 {
		return true
	}
	for _, a := range attrs {
		if a == "*" || strings.EqualFold(a, name) {
			return true
		}
	}
	return false
}

// matches evaluates a compiled RFC 4515 filter against e: enough of the
// grammar for ldapgate's own searches (and, or, not, equality, presence,
// substrings), case-insensitively.
func matches(p *ber.Packet, e *entry) bool {
	switch p.Tag {
	case ldap.FilterAnd:
		for _, c := range p.Children {
			if !matches(c, e) {
				return false
			}
		}
		return true
	case ldap.FilterOr:
		for _, c := range p.Children {
			if matches(c, e) {
				return true
			}
		}
		return false
	case ldap.FilterNot:
		return len(p.Children) == 1 && !matches(p.Children[0], e)
	case ldap.FilterPresent:
		attr := string(p.Data.Bytes())
		return strings.EqualFold(attr, "objectClass") || len(e.get(attr)) > 0
	case ldap.FilterEqualityMatch, ldap.FilterApproxMatch:
		if len(p.Children) != 2 {
			return false
		}
		attr, want := packetString(p.Children[0]), packetString(p.Children[1])
		for _, v := range e.get(attr) {
			if strings.EqualFold(v, want) {
				return true
			}
		}
		return false
	case ldap.FilterSubstrings:
		if len(p.Children) != 2 {
			return false
		}
		attr := packetString(p.Children[0])
		for _, v := range e.get(attr) {
			if substringMatch(strings.ToLower(v), p.Children[1].Children) {
				return true
			}
		}
		return false
	default:
		return false
	}
}

func substringMatch(v string, parts []*ber.Packet) bool {
	for _, part := range parts {
		s := strings.ToLower(packetString(part))
		switch part.Tag {
		case ldap.FilterSubstringsInitial:
			if !strings.HasPrefix(v, s) {
				return false
			}
			v = v[len(s):]
		case ldap.FilterSubstringsAny:
			i := strings.Index(v, s)
			if i < 0 {
				return false
			}
			v = v[i+len(s):]
		case ldap.FilterSubstringsFinal:
			if !strings.HasSuffix(v, s) {
				return false
			}
		}
	}
	return true
}

func packetString(p *ber.Packet) string {
	if s, ok := p.Value.(string); ok {
		return s
	}
	return string(p.Data.Bytes())
}
