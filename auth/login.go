package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/directory"
	"github.com/ldapgate/ldapgate/syncer"
)

// LoginRequest is one login attempt.
type LoginRequest struct {
	// Name is the login name: username@domain, a local user's name, or
	// (with Directory) a bare username.
	Name     string
	Password string
	// Directory is an optional directory id or name (SPEC §5).
	Directory string
	// ClientIP is the client's address for the per-address limit.
	ClientIP netip.Addr
}

// LoginResult is a successful login.
type LoginResult struct {
	User account.User
	// Token is the new session's token (empty for Basic-auth checks).
	Token     string
	ExpiresAt time.Time
}

// Login results (ldapgate_logins_total{result}).
const (
	resultSuccess        = "success"
	resultBadCredentials = "bad_credentials"
	resultForbidden      = "forbidden"
	resultChangePassword = "password_change_required"
	resultRateLimited    = "rate_limited"
	resultUnavailable    = "unavailable"
	resultError          = "error"
)

// Login checks the credentials and creates a session.
//
// Errors: ErrBadCredentials (401: wrong/empty password, unknown user,
// malformed name, disabled or locked in the directory — one answer so
// account state does not leak), ErrForbidden (403), ErrAmbiguousDirectory
// and ErrUnknownDirectory (400), *RateLimitedError (429), ErrUnavailable
// (503); anything else is internal.
func (s *Service) Login(ctx context.Context, req LoginRequest) (LoginResult, error) {
	return s.login(ctx, req, true)
}

func (s *Service) login(ctx context.Context, req LoginRequest, withSession bool) (LoginResult, error) {
	a, err := s.admit(ctx, req)
	if err != nil {
		return LoginResult{}, err
	}
	return s.check(ctx, a, withSession)
}

// attempt is a login admitted by the limits, its password not yet checked.
type attempt struct {
	req      LoginRequest
	st       *settings
	ln       LoginName
	dirLabel string
	now      time.Time
}

// admit parses the name and applies the login limits: a pair or address
// over its limit is refused (*RateLimitedError), a name failing from many
// addresses waits its slow-down here, in the request's own goroutine and
// holding no lock, for as long as ctx allows. Refusals are counted and
// logged here.
func (s *Service) admit(ctx context.Context, req LoginRequest) (_ *attempt, err error) {
	a := &attempt{req: req, st: s.st.Load(), dirLabel: "none"}
	result := resultError
	defer func() {
		if err != nil {
			s.m.Logins.WithLabelValues(a.dirLabel, result).Inc()
		}
	}()
	if a.ln, err = ParseLoginName(req.Name, req.Directory, s.dirs); err != nil {
		// A malformed name or an unknown directory: refused before any
		// look-up, so not counted against a name or address.
		result = resultBadCredentials
		s.log.Info("login refused", "err", err, "client", req.ClientIP)
		return nil, err
	}
	if a.ln.Dir != nil {
		a.dirLabel = a.ln.Dir.Config.Name
	}
	limited := func() (time.Duration, error) {
		a.now = time.Now()
		delay, err := s.limits.check(a.ln.Canonical, req.ClientIP, a.now, a.st)
		if err != nil {
			result = resultRateLimited
			s.log.Warn("login rate limited", "username", a.ln.Canonical, "client", req.ClientIP, "err", err)
		}
		return delay, err
	}
	delay, err := limited()
	switch {
	case err != nil:
		return nil, err
	case delay == 0:
		return a, nil
	}
	s.log.Info("login slowed down: many failures for this name", "username", a.ln.Canonical,
		"client", req.ClientIP, "delay", delay)
	t := time.NewTimer(delay)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return nil, fmt.Errorf("login: %w", ctx.Err())
	}
	// Again: attempts sent together from one address all passed the first
	// check, and the failures of those that went first count now.
	if _, err := limited(); err != nil {
		return nil, err
	}
	return a, nil
}

// check verifies an admitted attempt's password and, withSession, makes
// the session.
func (s *Service) check(ctx context.Context, a *attempt, withSession bool) (LoginResult, error) {
	req, st, ln, now := a.req, a.st, &a.ln, a.now
	result := resultError
	defer func() { s.m.Logins.WithLabelValues(a.dirLabel, result).Inc() }()

	fail := func(reason string, cause error) error {
		result = resultBadCredentials
		s.limits.fail(ln.Canonical, req.ClientIP, time.Now(), st)
		s.log.Info("login failed", "username", ln.Canonical, "directory", a.dirLabel, "client", req.ClientIP,
			"reason", reason, "err", cause)
		return ErrBadCredentials
	}
	if req.Password == "" {
		// Never reaches LDAP: an empty password is an unauthenticated
		// bind (RFC 4513 §5.1.2) that many servers accept.
		return LoginResult{}, fail("empty password", nil)
	}

	u, err := s.resolve(ctx, ln, req.Password, &a.dirLabel)
	switch {
	case err == nil:
	case errors.Is(err, errWrongPassword):
		return LoginResult{}, fail(strings.TrimPrefix(err.Error(), errWrongPassword.Error()+": "), err)
	case errors.Is(err, ErrAmbiguousDirectory):
		result = resultBadCredentials
		return LoginResult{}, err
	case errors.Is(err, ErrForbidden):
		result = resultForbidden
		// Counted as a failure too: a blocked account must not become a
		// free oracle for its directory password.
		s.limits.fail(ln.Canonical, req.ClientIP, time.Now(), st)
		s.log.Info("login refused", "username", ln.Canonical, "directory", a.dirLabel, "client", req.ClientIP, "err", err)
		return LoginResult{}, ErrForbidden
	case errors.Is(err, ErrAccountLocked):
		// Counted: the password may well have been wrong.
		result = resultForbidden
		s.limits.fail(ln.Canonical, req.ClientIP, time.Now(), st)
		s.log.Info("login refused: account locked in the directory", "username", ln.Canonical, "directory", a.dirLabel,
			"client", req.ClientIP, "err", err)
		return LoginResult{}, ErrAccountLocked
	case errors.Is(err, ErrPasswordChangeRequired):
		// The password was right: not a failure to count, and the
		// answer may say what to do next (SPEC §13).
		result = resultChangePassword
		s.log.Info("login refused: password change required", "username", ln.Canonical, "directory", a.dirLabel,
			"client", req.ClientIP, "err", err)
		return LoginResult{}, ErrPasswordChangeRequired
	case errors.Is(err, ErrUnavailable):
		result = resultUnavailable
		s.log.Warn("login: directory unavailable", "username", ln.Canonical, "directory", a.dirLabel, "err", err)
		return LoginResult{}, ErrUnavailable
	default:
		s.log.Error("login failed", "username", ln.Canonical, "directory", a.dirLabel, "err", err)
		return LoginResult{}, fmt.Errorf("login: %w", err)
	}

	s.limits.reset(ln.Canonical, req.ClientIP)
	res := LoginResult{User: u}
	if withSession {
		checked := u.PasswordHash
		u, err := s.store.UpdateUser(ctx, u.ID, func(x *account.User) error {
			x.LastLoginAt = now.UTC()
			return nil
		})
		if err != nil {
			s.log.Error("login: recording last_login_at", "user_id", res.User.ID, "err", err)
			return LoginResult{}, fmt.Errorf("login: %w", err)
		}
		res.User = u
		// The hash the password was checked against, not the one just
		// read back: a change in between must fail the login.
		u.PasswordHash = checked
		if res.Token, res.ExpiresAt, err = s.createSession(ctx, u, st); err != nil {
			s.log.Error("login: creating session", "user_id", u.ID, "err", err)
			return LoginResult{}, err
		}
	}
	result = resultSuccess
	s.log.Info("login", "username", res.User.Username, "user_id", res.User.ID, "directory", a.dirLabel,
		"client", req.ClientIP, "session", withSession)
	return res, nil
}

// errWrongPassword carries the logged reason of a failure answered as
// ErrBadCredentials.
var errWrongPassword = errors.New("bad credentials")

func wrong(reason string, cause error) error {
	if cause != nil {
		return fmt.Errorf("%w: %s: %w", errWrongPassword, reason, cause)
	}
	return fmt.Errorf("%w: %s", errWrongPassword, reason)
}

// resolve checks the password and returns the active store user.
func (s *Service) resolve(ctx context.Context, ln *LoginName, pw string, dirLabel *string) (account.User, error) {
	// A local user with the exact name logs in with their stored hash,
	// whatever the directories say (a break-glass admin must work when
	// LDAP is down).
	if cur, err := s.store.UserByName(ctx, ln.Canonical); err == nil && cur.Source == account.SourceLocal {
		*dirLabel = "local"
		ok, err := VerifyPassword(cur.PasswordHash, pw)
		switch {
		case err != nil:
			return account.User{}, wrong("unreadable local hash", err)
		case !ok:
			return account.User{}, wrong("wrong local password", nil)
		case !cur.Active():
			return account.User{}, fmt.Errorf("%w: local user state %s", ErrForbidden, cur.State)
		}
		return cur, nil
	} else if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return account.User{}, err
	}
	if ln.Ambiguous {
		return account.User{}, ErrAmbiguousDirectory
	}
	if ln.Dir == nil {
		burnDummy(pw)
		return account.User{}, wrong("no such local user and no directory for the name", nil)
	}
	return s.resolveLDAP(ctx, ln, pw)
}

func (s *Service) resolveLDAP(ctx context.Context, ln *LoginName, pw string) (account.User, error) {
	e := ln.Dir
	// Under legacy naming Username is the mail, which the directory client
	// then searches by (directory.Client.FindUser).
	du, err := e.Client.Authenticate(ctx, ln.Username, pw)
	refused := func(reason string) error {
		// A local user's wrong password costs an argon2id check; so does
		// the directory's refusal, or a name the directory route leads to
		// (every unclaimed domain, with a legacy-naming directory) would
		// show by its timing whether it is a local user's.
		burnDummy(pw)
		return wrong(reason, err)
	}
	switch {
	case err == nil:
	case errors.Is(err, directory.ErrPasswordChangeRequired):
		// The directory checked the password before saying so. A user the
		// store refuses anyway gets that answer instead.
		u, serr := s.storeUserFor(ctx, e, du)
		if serr != nil {
			return account.User{}, serr
		}
		if !u.Active() {
			return account.User{}, fmt.Errorf("%w: state %s (%s)", ErrForbidden, u.State, u.BlockReason)
		}
		return account.User{}, fmt.Errorf("%w: %w", ErrPasswordChangeRequired, err)
	case errors.Is(err, directory.ErrAccountExpired):
		// Also only after the right password (AD data 701, or the
		// entry's expiry). The store learns it now rather than at the next
		// sync (SPEC §13: state read at login too): the one-entry sync
		// makes the user blocked_in_ldap / expired and ends their sessions.
		if s.syncer != nil && du.DN != "" {
			if _, serr := s.syncer.SyncOne(ctx, e.Config.ID, du); serr != nil && !errors.Is(serr, syncer.ErrSkipped) {
				s.log.Warn("login: recording an expired account", "directory", e.Config.Name, "dn", du.DN, "err", serr)
			}
		}
		return account.User{}, fmt.Errorf("%w: %w", ErrForbidden, err)
	case errors.Is(err, directory.ErrUnavailable):
		return account.User{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, directory.ErrAccountDisabled):
		return account.User{}, refused("disabled in directory")
	case errors.Is(err, directory.ErrAccountLocked):
		// SPEC §13: 403 account_locked. slapd and AD report a lockout
		// whatever the password, so this tells that a locked name exists;
		// the contract takes that for the user's sake (SECURITY.md).
		return account.User{}, fmt.Errorf("%w: %w", ErrAccountLocked, err)
	case errors.Is(err, directory.ErrBadCredentials), errors.Is(err, directory.ErrUserNotFound):
		return account.User{}, refused("directory refused the bind")
	default:
		return account.User{}, fmt.Errorf("directory %s: %w", e.Config.Name, err)
	}

	u, err := s.storeUserFor(ctx, e, du)
	if err != nil {
		return account.User{}, err
	}
	if !u.Active() {
		return account.User{}, fmt.Errorf("%w: state %s (%s)", ErrForbidden, u.State, u.BlockReason)
	}
	return u, nil
}

// storeUserFor finds the store user of a directory entry that just bound:
// by (directory, uuid), then by canonical name (SPEC §2). One the store
// does not know yet is synced alone, on the spot (SPEC §5).
func (s *Service) storeUserFor(ctx context.Context, e *directory.Entry, du directory.User) (account.User, error) {
	dirID := e.Config.ID
	if du.UUID != "" {
		u, err := s.store.UserByUUID(ctx, dirID, du.UUID)
		if err == nil {
			return u, nil
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return account.User{}, err
		}
	}
	if name, ok := directory.CanonicalName(e.Config, du); ok {
		u, err := s.store.UserByName(ctx, name)
		switch {
		case err == nil && u.Source == account.SourceLDAP && u.DirectoryID == dirID:
			return u, nil
		case err == nil && u.Source == account.SourceLDAP:
			// The name belongs to a user of another directory: never
			// hand over someone else's account.
			return account.User{}, fmt.Errorf("%w: name %q belongs to directory %d", ErrForbidden, name, u.DirectoryID)
		case err != nil && !errors.Is(err, cache.ErrNotFound):
			return account.User{}, err
		}
		// Not found, or a local user the sync converts (rule 4).
	}
	if s.syncer == nil {
		return account.User{}, fmt.Errorf("%w: not synced yet", ErrForbidden)
	}
	u, err := s.syncer.SyncOne(ctx, dirID, du)
	switch {
	case errors.Is(err, syncer.ErrSkipped):
		return account.User{}, fmt.Errorf("%w: the sync rules skip %s: %w", ErrForbidden, du.DN, err)
	case errors.Is(err, directory.ErrUnavailable):
		return account.User{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case err != nil:
		return account.User{}, fmt.Errorf("sync of %s: %w", du.DN, err)
	}
	s.log.Info("user synced at login", "username", u.Username, "user_id", u.ID, "directory", e.Config.Name)
	return u, nil
}
