package directory

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/go-ldap/ldap/v3"

	"github.com/ldapgate/ldapgate/config"
	"github.com/ldapgate/ldapgate/metrics"
)

// LDAP is the go-ldap Client of one directory.
type LDAP struct {
	s    *settings
	log  *slog.Logger
	m    *metrics.Metrics
	tls  *tls.Config
	pool *pool
	// noSuchDN is bound as when a login name is not found: under the
	// users' base, named by a random value no entry has.
	noSuchDN string
	// noPrime: this server refused a primed live-change cookie
	// (live.go), so streams start from its full content.
	noPrime atomic.Bool
}

var _ Client = (*LDAP)(nil)

// Open builds the client of one directory. It does not connect: a directory
// that is down must not stop ldapgate from starting or a config from
// loading; the first operation dials. It fails only on a config it cannot
// use (no URL, bad scheme, unreadable CA file, a filter that does not
// compile). m may be nil.
func Open(cfg config.Directory, log *slog.Logger, m *metrics.Metrics) (*LDAP, error) {
	s, err := resolveSettings(cfg)
	if err != nil {
		return nil, err
	}
	tc, err := tlsBase(cfg.TLS)
	if err != nil {
		return nil, fmt.Errorf("directory %q: %w", cfg.Name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("directory %q: %w", cfg.Name, err)
	}
	attr := s.usernameAttr
	if attr == "" {
		attr = "cn"
	}
	l := &LDAP{s: s, log: log, m: m, tls: tc,
		noSuchDN: attr + "=ldapgate-no-such-user-" + hex.EncodeToString(rnd[:]) + "," + s.usersBase}
	l.pool = newPool(s.poolSize, func(ctx context.Context) (*conn, error) {
		return l.dial(ctx, "dial", true)
	})
	return l, nil
}

// Close releases the pool. Operations running keep their connection until
// they finish; new ones fail with ErrClosed.
func (l *LDAP) Close() error {
	l.pool.close()
	return nil
}

func (l *LDAP) observe(op string, start time.Time) {
	if l.m == nil {
		return
	}
	l.m.LDAPOpDuration.WithLabelValues(l.s.name, op).Observe(time.Since(start).Seconds())
}

// withConn runs fn on a pooled service connection. If ctx ends while fn
// runs, the connection is closed so fn's blocked request returns at once.
// A failure on a connection that sat idle (the server may have dropped it
// silently) is retried once on a fresh one when retry says fn has not yet
// handed anything to its caller.
func (l *LDAP) withConn(ctx context.Context, op string, retry func() bool, fn func(*conn) error) error {
	for attempt := 0; ; attempt++ {
		c, reused, err := l.pool.acquire(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return &ReadError{Op: op, Kind: KindClosed, Class: ErrUnavailable, Err: err}
			}
			return classify(ctx, op, "", err)
		}
		stop := context.AfterFunc(ctx, func() { _ = c.Close() })
		err = fn(c)
		stop()
		var cb *callbackError
		if errors.As(err, &cb) {
			// The caller's own error: the connection is fine (if a page
			// was cut short, search abandoned it), and err goes back as is.
			l.pool.release(c, !c.IsClosing())
			return cb.err
		}
		err = classify(ctx, op, c.url, err)
		broken := err != nil && (errors.Is(err, ErrUnavailable) || c.IsClosing())
		l.pool.release(c, !broken)
		if err == nil {
			return nil
		}
		if broken && reused && attempt == 0 && ctx.Err() == nil && (retry == nil || retry()) {
			l.log.Debug("ldap pooled connection failed, retrying on a new one",
				"directory", l.s.name, "url", c.url, "error", err.Error())
			continue
		}
		return err
	}
}

// userFilterFor is the search of one login name. The value is escaped here,
// exactly once, where the filter is built (Dex escaped twice, so names with
// *()\ never matched).
func (l *LDAP) userFilterFor(username string) string {
	return l.s.objectSearchFilter("(" + l.s.loginAttr + "=" + ldap.EscapeFilter(username) + ")")
}

// searchable: no login name is empty or contains control characters;
// 389-ds even truncates an assertion value at NUL, so "alice\x00" would
// find alice. Such names are refused before any I/O.
func searchable(username string) bool {
	return username != "" && !strings.ContainsFunc(username, unicode.IsControl)
}

// FindUser looks one user up by login name. ErrUserNotFound if none,
// ErrAmbiguousUser if more than one entry has that name.
func (l *LDAP) FindUser(ctx context.Context, username string) (User, error) {
	defer l.observe("search", time.Now())
	if !searchable(username) {
		return User{}, fmt.Errorf("ldap search: login name empty or with control characters: %w", ErrUserNotFound)
	}
	var u User
	err := l.withConn(ctx, "search", nil, func(c *conn) error {
		req := ldap.NewSearchRequest(l.s.usersBase, ldap.ScopeWholeSubtree, ldap.DerefAlways,
			2, timeLimitSeconds(l.s.timeout), false, l.userFilterFor(username), l.s.loginAttributes(), nil)
		res, err := c.Search(req)
		if err != nil {
			// Our own size limit of 2 answers "more than one".
			if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil && len(res.Entries) > 1 {
				return fmt.Errorf("ldap search %q: %w", username, ErrAmbiguousUser)
			}
			return err
		}
		switch len(res.Entries) {
		case 0:
			return fmt.Errorf("ldap search %q: %w", username, ErrUserNotFound)
		case 1:
		default:
			return fmt.Errorf("ldap search %q: %w", username, ErrAmbiguousUser)
		}
		u = l.toUser(res.Entries[0], nil)
		// The value of the attribute searched (first, as toUser takes it).
		login := res.Entries[0].first(l.s.loginAttr)
		if !strings.EqualFold(login, username) {
			// The server's matching rule is looser than ours (insignificant
			// spaces, Unicode folding, truncation): only the exact name,
			// ignoring case, is that user.
			l.log.Debug("ldap search matched another spelling", "directory", l.s.name, "dn", u.DN)
			return fmt.Errorf("ldap search %q: matched %q: %w", username, login, ErrUserNotFound)
		}
		// Rule 8's override and rule 7's user_filter, decided the way
		// ReadUsers decides them: a base-scope search of the entry with
		// the filter, so the server's matching rules apply.
		matches := func(filter string) (bool, error) {
			req := ldap.NewSearchRequest(res.Entries[0].DN, ldap.ScopeBaseObject, ldap.DerefAlways,
				1, timeLimitSeconds(l.s.timeout), false, filter, []string{"1.1"}, nil)
			r, err := c.Search(req)
			if err != nil {
				return false, err
			}
			return len(r.Entries) > 0, nil
		}
		if l.s.disabledFilter != "" {
			if u.Disabled, err = matches(l.s.objectSearchFilter(l.s.disabledFilter)); err != nil {
				return err
			}
		}
		if l.s.userFilter != "" {
			// Found anyway (the search above has no user_filter), so the
			// login path can refuse with the rule's reason: the one-user
			// sync skips OutOfScope users (403), and a stored user's state
			// decides as for every other scope rule.
			in, err := matches(l.s.userSearchFilter(""))
			if err != nil {
				return err
			}
			u.OutOfScope = !in
		}
		return nil
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// Authenticate finds the user with the service account, then binds as the
// user's DN on a connection of its own: a bind changes the identity of a
// connection, so a pooled service connection must never carry it.
func (l *LDAP) Authenticate(ctx context.Context, username, password string) (User, error) {
	// An empty password would be an unauthenticated bind (RFC 4513 §5.1.2),
	// which many servers "accept" for any DN: refuse before any I/O.
	if password == "" {
		return User{}, fmt.Errorf("%w: empty password", ErrBadCredentials)
	}
	u, err := l.findForLogin(ctx, username, password)
	if err != nil {
		return User{}, err
	}
	ctls, err := l.bindAs(ctx, u, password)
	if errors.Is(err, ErrPasswordChangeRequired) || errors.Is(err, ErrAccountExpired) {
		// The server said so only after the password matched (AD
		// 532/773/701, ppolicy passwordExpired): the caller may look
		// the user up.
		return u, err
	}
	if err != nil {
		return User{}, err
	}
	// The password is right: only now may the answer say more (SPEC §5).
	if err := boundState(ctls, u, time.Now()); err != nil {
		return u, err
	}
	return u, nil
}

func (l *LDAP) bindAs(ctx context.Context, u User, password string) ([]ldap.Control, error) {
	defer l.observe("bind", time.Now())
	c, err := l.dial(ctx, "bind", false)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	// The DN is the server's own string and the password is sent as is:
	// neither is a filter, so neither is escaped.
	ctls, err := c.Bind(u.DN, password, l.policyControls())
	stop()
	if err == nil {
		return ctls, nil
	}
	return nil, l.bindFailure(ctx, c.url, err, ctls, u)
}

// Check dials (a fresh connection, not a pooled one, so it proves the
// connect and the service bind now), then counts users and groups with
// paged searches.
func (l *LDAP) Check(ctx context.Context) (CheckResult, error) {
	defer l.observe("check", time.Now())
	c, err := l.dial(ctx, "check", true)
	if err != nil {
		return CheckResult{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	res := CheckResult{URL: c.url}
	count := func(base, filter string, n *int) error {
		req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.DerefAlways,
			0, timeLimitSeconds(l.s.timeout), false, filter, []string{"1.1"}, nil)
		return l.search(ctx, c, "check", req, l.s.pageSize, func(*entry) error { *n++; return nil })
	}
	// search already classifies its errors as op "check".
	if err := count(l.s.usersBase, l.s.userSearchFilter(""), &res.Users); err != nil {
		return CheckResult{}, err
	}
	if err := count(l.s.groupsBase, l.s.groupObjectFilter, &res.Groups); err != nil {
		return CheckResult{}, err
	}
	return res, nil
}

// timeLimitSeconds is the server-side time limit of a request, so a server
// gives up (and says timeLimitExceeded) about when we would.
func timeLimitSeconds(d time.Duration) int {
	s := int(d / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
