package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
	"github.com/ldapgate/ldapgate/directory"
)

// ChangeRequest is a user's own password change (SPEC §13).
type ChangeRequest struct {
	// Name and Directory as in LoginRequest.
	Name        string
	Directory   string
	OldPassword string
	NewPassword string
	ClientIP    netip.Addr
}

// ChangePassword changes a directory user's password in the directory, as
// the user, then logs them in with the new one (the login's answer and
// session). The §5 login limits apply: a wrong old password counts as a
// failed login, and a limited name or address is refused before any bind.
//
// Errors: those of Login, plus *PasswordRefusedError (the directory's
// policy said no), ErrTLSRequired and ErrNotDirectoryUser (422).
func (s *Service) ChangePassword(ctx context.Context, req ChangeRequest) (LoginResult, error) {
	// The login's admission: name parsing, the limits and the slow-down
	// of a name failing from many addresses, counted and logged there.
	a, err := s.admit(ctx, LoginRequest{Name: req.Name, Password: req.OldPassword, Directory: req.Directory,
		ClientIP: req.ClientIP})
	if err != nil {
		return LoginResult{}, err
	}
	st, ln, dirLabel := a.st, &a.ln, a.dirLabel
	result := resultError
	defer func() {
		if result != "" {
			s.m.Logins.WithLabelValues(dirLabel, result).Inc()
		}
	}()
	fail := func(reason string, cause error) error {
		result = resultBadCredentials
		s.limits.fail(ln.Canonical, req.ClientIP, time.Now(), st)
		s.log.Info("password change failed", "username", ln.Canonical, "directory", dirLabel, "client", req.ClientIP,
			"reason", reason, "err", cause)
		return ErrBadCredentials
	}
	if req.OldPassword == "" {
		return LoginResult{}, fail("empty password", nil)
	}

	// A local user's password is the administrator's to set; the old one
	// is still checked first, so the answer tells nothing to a stranger.
	if cur, err := s.store.UserByName(ctx, ln.Canonical); err == nil && cur.Source == account.SourceLocal {
		dirLabel = "local"
		if ok, err := VerifyPassword(cur.PasswordHash, req.OldPassword); err != nil || !ok {
			return LoginResult{}, fail("wrong local password", err)
		}
		result = resultForbidden
		return LoginResult{}, ErrNotDirectoryUser
	} else if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return LoginResult{}, fmt.Errorf("password change: %w", err)
	}
	if ln.Ambiguous {
		result = resultBadCredentials
		return LoginResult{}, ErrAmbiguousDirectory
	}
	if ln.Dir == nil {
		burnDummy(req.OldPassword)
		return LoginResult{}, fail("no such local user and no directory for the name", nil)
	}

	du, err := ln.Dir.Client.ChangePassword(ctx, ln.Username, req.OldPassword, req.NewPassword)
	var refused *directory.PasswordRefusedError
	switch {
	case err == nil:
	case errors.As(err, &refused):
		// The old password was right (the server checked it first): not a
		// failure to count; the user needs the reason to pick another.
		result = "password_refused"
		return LoginResult{}, &PasswordRefusedError{Reason: refused.Reason}
	case errors.Is(err, directory.ErrTLSRequired):
		result = resultError
		s.log.Error("password change needs TLS", "directory", dirLabel, "err", err)
		return LoginResult{}, ErrTLSRequired
	case errors.Is(err, directory.ErrUnavailable):
		result = resultUnavailable
		s.log.Warn("password change: directory unavailable", "username", ln.Canonical, "directory", dirLabel, "err", err)
		return LoginResult{}, ErrUnavailable
	case errors.Is(err, directory.ErrAccountExpired):
		result = resultForbidden
		s.limits.fail(ln.Canonical, req.ClientIP, time.Now(), st)
		s.log.Info("password change refused", "username", ln.Canonical, "directory", dirLabel, "err", err)
		return LoginResult{}, ErrForbidden
	case errors.Is(err, directory.ErrPasswordChangeRequired):
		// ppolicy without grace logins: the expired password no longer
		// binds, so the user cannot change it themselves.
		result = "password_refused"
		return LoginResult{}, &PasswordRefusedError{Reason: "the password has expired and the directory does not let " +
			"it be changed with the old one; ask an administrator to reset it"}
	case errors.Is(err, directory.ErrBadCredentials), errors.Is(err, directory.ErrUserNotFound),
		errors.Is(err, directory.ErrAccountDisabled), errors.Is(err, directory.ErrAccountLocked):
		// As a login's refusal (resolveLDAP): an argon2id check too, so a
		// local user's name does not show by a slower answer.
		burnDummy(req.OldPassword)
		return LoginResult{}, fail("directory refused the bind", err)
	default:
		s.log.Error("password change failed", "username", ln.Canonical, "directory", dirLabel, "err", err)
		return LoginResult{}, fmt.Errorf("password change: %w", err)
	}
	s.log.Info("password changed", "username", ln.Canonical, "directory", dirLabel, "client", req.ClientIP)
	// SPEC §5: a password change ends the user's sessions (and cached Basic
	// credentials); the login below makes the one they continue with.
	if du.UUID != "" {
		if u, err := s.store.UserByUUID(ctx, ln.Dir.Config.ID, du.UUID); err == nil {
			if err := s.EndUserSessions(ctx, u.ID); err != nil {
				s.log.Error("password change: ending sessions", "user_id", u.ID, "err", err)
			}
		}
	}
	// The login's own metric and log line follow.
	result = ""
	return s.login(ctx, LoginRequest{Name: req.Name, Password: req.NewPassword, Directory: req.Directory,
		ClientIP: req.ClientIP}, true)
}
