package directory

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/google/uuid"

	"github.com/ldapgate/ldapgate/config"
)

// Live modes a stream reports when it is up (SPEC §13).
const (
	// LiveStreaming: RFC 4533 refreshAndPersist, the server pushes changes.
	LiveStreaming = "streaming"
	// LivePolling: Active Directory's DirSync, asked every live_interval.
	LivePolling = "polling"
)

// ErrCookieRefused: the server cannot resume from the cookie it was given
// (RFC 4533 e-syncRefreshRequired); the caller drops it and starts over.
var ErrCookieRefused = errors.New("directory refused the live-change cookie")

// ErrPrimeRefused: the server ties its cookies to the search, so the
// stream's first start (no cookie of its own yet) begins from the full
// content; reconnect at once, nothing was missed.
var ErrPrimeRefused = errors.New("directory refused a primed live-change cookie")

// LiveEvent is one changed entry. The stream does not interpret it: the
// syncer re-reads the entry (and the groups, when it is no user) with the
// same code a full sync uses.
type LiveEvent struct {
	// Deleted: the entry is gone (or left the stream's filter).
	Deleted bool
	// DN of the entry; may be empty for a delete.
	DN string
	// UUIDs are the forms the entry's immutable id may be stored in
	// (entryUUID text, 389-ds's nsUniqueId layout, AD's objectGUID text).
	UUIDs []string
}

// LiveBatch is what a stream hands over: events and the cookie that holds
// once they are applied.
type LiveBatch struct {
	Events []LiveEvent
	// Cookie is the server's state after these events; empty when
	// unchanged.
	Cookie []byte
	// Resync: the server sent its whole content rather than changes (no
	// cookie, or one too old for it to know what changed since). Events
	// are not given; a full sync has to decide.
	Resync bool
}

// LiveHandler receives what a stream reports. Batch is called in order from
// the stream's goroutine; an error from it ends the stream with that error
// (the cookie of that batch is not taken).
type LiveHandler struct {
	Connected func(mode string)
	Batch     func(ctx context.Context, b LiveBatch) error
}

// Follower is what a live directory offers beyond Client (the go-ldap
// client does; test fakes need not).
type Follower interface {
	// Follow connects a dedicated connection and reports changes from
	// cookie on (nil: from scratch) until ctx ends or the connection
	// breaks. It always returns an error (ctx.Err() when stopped).
	Follow(ctx context.Context, cookie []byte, interval time.Duration, h LiveHandler) error
	// ReadUserByDN reads one user entry as ReadUsers would return it; false
	// when dn is not a user of this directory (no entry, outside users_dn,
	// or not matching user_object_filter).
	ReadUserByDN(ctx context.Context, dn string) (User, bool, error)
	// InGroups and InUsers report whether dn lies under groups_dn or
	// users_dn.
	InGroups(dn string) bool
	InUsers(dn string) bool
}

var _ Follower = (*LDAP)(nil)

// under reports whether dn equals base or lies below it.
func under(dn, base string) bool {
	d, b := NormalizeDN(dn), NormalizeDN(base)
	return d == b || strings.HasSuffix(d, ","+b)
}

// InGroups reports whether dn lies under groups_dn.
func (l *LDAP) InGroups(dn string) bool { return under(dn, l.s.groupsBase) }

// InUsers reports whether dn lies under users_dn.
func (l *LDAP) InUsers(dn string) bool { return under(dn, l.s.usersBase) }

// ReadUserByDN reads one entry with the user read's attributes and rules:
// Disabled from disabled_filter when set, OutOfScope from user_filter.
func (l *LDAP) ReadUserByDN(ctx context.Context, dn string) (User, bool, error) {
	defer l.observe("read_user", time.Now())
	if dn == "" || !under(dn, l.s.usersBase) {
		return User{}, false, nil
	}
	var (
		u     User
		found bool
	)
	err := l.withConn(ctx, "read_user", nil, func(c *conn) error {
		match := func(filter string, attrs []string, fn func(*entry)) (bool, error) {
			req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
				1, timeLimitSeconds(l.s.timeout), false, filter, attrs, nil)
			hit := false
			err := l.search(ctx, c, "read_user", req, 0, func(e *entry) error {
				hit = true
				if fn != nil {
					fn(e)
				}
				return nil
			})
			if isNoSuchObject(err) {
				return false, nil
			}
			return hit, err
		}
		var disabled map[string]struct{}
		if l.s.disabledFilter != "" {
			hit, err := match(l.s.objectSearchFilter(l.s.disabledFilter), []string{"1.1"}, nil)
			if err != nil {
				return err
			}
			disabled = map[string]struct{}{}
			if hit {
				disabled[NormalizeDN(dn)] = struct{}{}
			}
		}
		hit, err := match(l.s.objectSearchFilter(""), l.s.userAttributes(), func(e *entry) { u = l.toUser(e, disabled) })
		if err != nil || !hit {
			return err
		}
		found = true
		if l.s.userFilter != "" {
			in, err := match(l.s.userSearchFilter(""), []string{"1.1"}, nil)
			if err != nil {
				return err
			}
			u.OutOfScope = !in
		}
		return nil
	})
	if err != nil {
		return User{}, false, err
	}
	return u, found, nil
}

// isNoSuchObject: a base search of an entry that is gone.
func isNoSuchObject(err error) bool {
	var re *ReadError
	if errors.As(err, &re) {
		return re.Code == ldap.LDAPResultNoSuchObject
	}
	var le *ldap.Error
	return errors.As(err, &le) && le.ResultCode == ldap.LDAPResultNoSuchObject
}

// Follow runs one live stream: refreshAndPersist where the server speaks
// RFC 4533, DirSync polled every interval on Active Directory. It uses a
// connection of its own (not the pool's: it is held for as long as the
// stream lasts), dialled with go-ldap, whose Syncrepl and DirSync do the
// protocol.
func (l *LDAP) Follow(ctx context.Context, cookie []byte, interval time.Duration, h LiveHandler) error {
	c, err := l.liveDial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if l.s.ad() {
		return l.followDirSync(ctx, c, cookie, interval, h)
	}
	return l.followSyncrepl(ctx, c, cookie, h)
}

func (l *LDAP) liveDial(ctx context.Context) (*ldap.Conn, error) {
	var errs []error
	for _, u := range l.s.urls {
		c, err := l.liveDialOne(ctx, u)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("live stream of %s: %w", l.s.name, errors.Join(errs...))
}

func (l *LDAP) liveDialOne(ctx context.Context, u *url.URL) (*ldap.Conn, error) {
	where := u.String()
	d := &net.Dialer{Timeout: l.s.connectTimeout, KeepAlive: 15 * time.Second}
	opts := []ldap.DialOpt{ldap.DialWithDialer(d)}
	if u.Scheme == "ldaps" {
		opts = append(opts, ldap.DialWithTLSConfig(l.tlsFor(u)))
	}
	c, err := ldap.DialURL(where, opts...)
	if err != nil {
		return nil, classify(ctx, "live_dial", where, err)
	}
	c.SetTimeout(l.s.connectTimeout)
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if l.s.startTLS && u.Scheme != "ldaps" {
		if err := c.StartTLS(l.tlsFor(u)); err != nil {
			_ = c.Close()
			return nil, tlsKind(classify(ctx, "starttls", where, err))
		}
	}
	if l.s.bindDN != "" {
		c.SetTimeout(l.s.timeout)
		if err := c.Bind(l.s.bindDN, l.s.bindPassword.Reveal()); err != nil {
			_ = c.Close()
			return nil, classify(ctx, "bind", where, err)
		}
	}
	return c, nil
}

// liveBase is the deepest DN holding both users_dn and groups_dn: one
// stream sees both (group changes count, SPEC §13).
func (l *LDAP) liveBase() string {
	if l.s.ad() {
		// DirSync only runs at the root of a naming context.
		return l.s.baseDN
	}
	u, err1 := ldap.ParseDN(l.s.usersBase)
	g, err2 := ldap.ParseDN(l.s.groupsBase)
	if err1 != nil || err2 != nil {
		return l.s.baseDN
	}
	n := 0
	for n < len(u.RDNs) && n < len(g.RDNs) {
		a, b := u.RDNs[len(u.RDNs)-1-n], g.RDNs[len(g.RDNs)-1-n]
		if !a.EqualFold(b) {
			break
		}
		n++
	}
	if n == 0 {
		return l.s.baseDN
	}
	rdns := u.RDNs[len(u.RDNs)-n:]
	parts := make([]string, len(rdns))
	for i, r := range rdns {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// syncItem is one message of a syncrepl stream.
type syncItem struct {
	entry    *ldap.Entry
	controls []ldap.Control
}

// maxLiveBatch bounds the changes handed over as one batch.
const maxLiveBatch = 1000

// maxRefreshEvents bounds the events a resumed refresh keeps before it
// gives up and asks for a full sync instead.
const maxRefreshEvents = 50_000

// matchNothing is a filter no entry matches.
const matchNothing = "(&(objectClass=*)(!(objectClass=*)))"

// primeCookie gets the server's current cookie without its content: a
// refreshOnly search whose filter matches nothing. OpenLDAP's cookie names
// a point in its change log whatever the filter, so the real stream then
// starts from it with no full refresh (which would also meet the size
// limit of an ordinary service account). A server whose cookie is tied to
// the search (389-ds) refuses it or re-sends everything: both are handled.
func (l *LDAP) primeCookie(ctx context.Context, c *ldap.Conn) ([]byte, error) {
	req := ldap.NewSearchRequest(l.liveBase(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0,
		timeLimitSeconds(l.s.timeout), false, matchNothing, []string{"1.1"}, nil)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := c.Syncrepl(sctx, req, 8, ldap.SyncRequestModeRefreshOnly, nil, false)
	var cookie []byte
	for r.Next() {
		for _, ctl := range r.Controls() {
			switch x := ctl.(type) {
			case *ldap.ControlSyncDone:
				cookie = x.Cookie
			case *ldap.ControlSyncInfo:
				switch {
				case x.NewCookie != nil:
					cookie = x.NewCookie.Cookie
				case x.RefreshDelete != nil && len(x.RefreshDelete.Cookie) > 0:
					cookie = x.RefreshDelete.Cookie
				case x.RefreshPresent != nil && len(x.RefreshPresent.Cookie) > 0:
					cookie = x.RefreshPresent.Cookie
				}
			}
		}
	}
	if err := r.Err(); err != nil {
		return nil, classify(ctx, "live", "", err)
	}
	return cookie, nil
}

func (l *LDAP) followSyncrepl(ctx context.Context, c *ldap.Conn, cookie []byte, h LiveHandler) error {
	primed := false
	if len(cookie) == 0 && !l.noPrime.Load() {
		ck, err := l.primeCookie(ctx, c)
		if err != nil {
			return err
		}
		cookie, primed = ck, len(ck) > 0
	}
	// The persistent search never completes: no per-request timeout.
	c.SetTimeout(0)
	req := ldap.NewSearchRequest(l.liveBase(), ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(|"+l.s.userObjectFilter+l.s.groupObjectFilter+")", []string{"1.1"}, nil)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := c.Syncrepl(sctx, req, 64, ldap.SyncRequestModeRefreshAndPersist, cookie, false)

	refreshing := true
	// A primed cookie skipped the content this process never saw: the
	// full sync decides about it, once.
	resync := len(cookie) == 0 || primed
	var pending []LiveEvent
	last := cookie // what to keep when the refresh brings no new one
	deliver := func(b LiveBatch) error {
		if len(b.Cookie) > 0 {
			last = b.Cookie
		}
		if err := h.Batch(ctx, b); err != nil {
			return fmt.Errorf("live stream of %s: %w", l.s.name, err)
		}
		return nil
	}
	// In the persist phase, changes that arrived together are handed over
	// as one batch (one run, one cookie write): a burst of 10,000 changes
	// is then absorbed in batches instead of one store commit each.
	var batch []LiveEvent
	var batchCookie []byte
	add := func(ev LiveEvent, ck []byte) {
		if refreshing {
			if len(ck) > 0 {
				last = ck
			}
			if !resync {
				pending = append(pending, ev)
				if len(pending) > maxRefreshEvents {
					resync, pending = true, nil
				}
			}
			return
		}
		batch = append(batch, ev)
		if len(ck) > 0 {
			batchCookie = ck
		}
	}
	endRefresh := func(ck []byte) error {
		if len(ck) > 0 {
			last = ck
		}
		refreshing = false
		if h.Connected != nil {
			h.Connected(LiveStreaming)
		}
		b := LiveBatch{Events: pending, Cookie: last, Resync: resync}
		if resync {
			b.Events = nil
		}
		pending = nil
		return deliver(b)
	}
	handle := func(it syncItem) error {
		if e := it.entry; e != nil {
			st, ok := ldap.FindControl(it.controls, ldap.ControlTypeSyncState).(*ldap.ControlSyncState)
			if !ok {
				return nil
			}
			ev := LiveEvent{DN: e.DN, UUIDs: uuidForms(st.EntryUUID)}
			switch st.State {
			case ldap.SyncStatePresent:
				// The present phase lists what still exists; what it
				// leaves out was deleted. Only a full read can tell.
				if refreshing {
					resync, pending = true, nil
				}
				return nil
			case ldap.SyncStateDelete:
				ev.Deleted = true
			}
			add(ev, st.Cookie)
			return nil
		}
		for _, ctl := range it.controls {
			info, ok := ctl.(*ldap.ControlSyncInfo)
			if !ok {
				continue
			}
			switch {
			case info.NewCookie != nil:
				if refreshing {
					last = info.NewCookie.Cookie
				} else {
					batchCookie = info.NewCookie.Cookie
				}
			case info.RefreshDelete != nil:
				if info.RefreshDelete.RefreshDone && refreshing {
					if err := endRefresh(info.RefreshDelete.Cookie); err != nil {
						return err
					}
				}
			case info.RefreshPresent != nil:
				if refreshing {
					resync, pending = true, nil
					if info.RefreshPresent.RefreshDone {
						if err := endRefresh(info.RefreshPresent.Cookie); err != nil {
							return err
						}
					}
				}
			case info.SyncIdSet != nil:
				set := info.SyncIdSet
				if !set.RefreshDeletes {
					if refreshing {
						resync, pending = true, nil
					}
					continue
				}
				for i, id := range set.SyncUUIDs {
					var ck []byte
					if i == len(set.SyncUUIDs)-1 {
						ck = set.Cookie
					}
					add(LiveEvent{Deleted: true, UUIDs: uuidForms(id)}, ck)
				}
			}
		}
		return nil
	}

	// The pump hands what the server sends to this loop, which takes
	// whatever is already waiting as one batch.
	items := make(chan syncItem, maxLiveBatch)
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		defer close(items)
		for r.Next() {
			select {
			case items <- syncItem{entry: r.Entry(), controls: r.Controls()}:
			case <-sctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		<-pumped
	}()
	for {
		it, ok := <-items
		if !ok {
			break
		}
		n := 0
		for {
			if err := handle(it); err != nil {
				return err
			}
			n++
			if n == maxLiveBatch {
				break
			}
			select {
			case it, ok = <-items:
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		if len(batch) > 0 || len(batchCookie) > 0 {
			b := LiveBatch{Events: batch, Cookie: batchCookie}
			batch, batchCookie = nil, nil
			if err := deliver(b); err != nil {
				return err
			}
		}
	}
	cancel()
	<-pumped
	if err := ctx.Err(); err != nil {
		return err
	}
	err := r.Err()
	// e-syncRefreshRequired (RFC 4533 §2.6); OpenLDAP answers
	// unwillingToPerform ("consumer state is newer than provider") when it
	// lost its last changes in a crash, before its checkpoint.
	if ldap.IsErrorWithCode(err, 4096) || (len(cookie) > 0 && ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform)) {
		if primed {
			// The cookie is tied to the search here: start from the full
			// content from now on.
			l.noPrime.Store(true)
			return fmt.Errorf("live stream of %s: %w", l.s.name, ErrPrimeRefused)
		}
		return fmt.Errorf("live stream of %s: %w", l.s.name, ErrCookieRefused)
	}
	if err == nil {
		err = errors.New("the server ended the stream")
	}
	_ = last
	return classify(ctx, "live", "", err)
}

// uuidForms are the textual forms an RFC 4533 syncUUID may be stored in:
// entryUUID's (OpenLDAP, 389-ds with entryUUID) and 389-ds's nsUniqueId,
// which its content sync plugin sends as the same 16 bytes.
func uuidForms(id uuid.UUID) []string {
	h := hex.EncodeToString(id[:])
	return []string{id.String(), h[0:8] + "-" + h[8:16] + "-" + h[16:24] + "-" + h[24:32]}
}

// dirSyncFilter: every user and group; deleted objects match too (DirSync
// returns them with isDeleted whatever the filter says of other attributes).
const dirSyncFilter = "(|(objectClass=user)(objectClass=group))"

func (l *LDAP) followDirSync(ctx context.Context, c *ldap.Conn, cookie []byte, interval time.Duration, h LiveHandler) error {
	if interval <= 0 {
		interval = config.DefaultLiveInterval
	}
	c.SetTimeout(l.s.timeout)
	resync := len(cookie) == 0
	connected := false
	kept := cookie
	for {
		var events []LiveEvent
		for {
			req := ldap.NewSearchRequest(l.s.baseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0,
				timeLimitSeconds(l.s.timeout), false, dirSyncFilter,
				[]string{"objectGUID", "isDeleted", "userAccountControl", "member", "memberOf",
					"primaryGroupID", "accountExpires", "pwdLastSet", "objectClass",
					l.s.usernameAttr, l.s.emailAttr, l.s.displayNameAttr}, nil)
			res, err := c.DirSync(req, ldap.DirSyncObjectSecurity, 0, cookie)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return classify(ctx, "live", "", err)
			}
			ctl, ok := ldap.FindControl(res.Controls, ldap.ControlTypeDirSync).(*ldap.ControlDirSync)
			if !ok {
				return &ReadError{Op: "live", Kind: KindMissingPage, Class: ErrIncompleteRead,
					Err: errors.New("no DirSync control in the answer")}
			}
			if !resync {
				for _, e := range res.Entries {
					ev := LiveEvent{DN: e.DN}
					if g, ok := formatGUID(e.GetRawAttributeValue("objectGUID")); ok {
						ev.UUIDs = []string{g}
					}
					ev.Deleted = strings.EqualFold(e.GetAttributeValue("isDeleted"), "TRUE")
					if ev.Deleted {
						ev.DN = ""
					}
					events = append(events, ev)
					if len(events) > maxRefreshEvents {
						resync, events = true, nil
					}
				}
			}
			if len(ctl.Cookie) > 0 {
				cookie = ctl.Cookie
			}
			if ctl.Flags == 0 { // no more changes pending
				break
			}
		}
		if !connected {
			connected = true
			if h.Connected != nil {
				h.Connected(LivePolling)
			}
		}
		b := LiveBatch{Events: events, Cookie: cookie, Resync: resync}
		if resync {
			b.Events = nil
		}
		// An unchanged cookie (nothing happened) is not written again.
		if len(b.Events) > 0 || b.Resync || !bytes.Equal(cookie, kept) {
			kept = cookie
			if err := h.Batch(ctx, b); err != nil {
				return fmt.Errorf("live stream of %s: %w", l.s.name, err)
			}
		}
		resync = false
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
