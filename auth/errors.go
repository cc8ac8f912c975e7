// Package auth is ldapgate's login logic (SPEC §5), without HTTP routing:
// login-name parsing and directory choice, local and LDAP password checks,
// brute-force limits, sessions (random tokens, only their SHA-256 stored,
// an LRU in front of the store) and cached Basic-auth checks.
package auth

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors the HTTP front maps to status codes.
var (
	// ErrBadCredentials: wrong or empty password, unknown user, malformed
	// name, or a directory account that is disabled or locked. One error
	// for all of them so an attacker cannot tell which (401).
	ErrBadCredentials = errors.New("invalid username or password")
	// ErrInvalidName is a malformed login name (control characters, too
	// long, empty parts). It is also ErrBadCredentials: a 401 like any
	// other failed login.
	ErrInvalidName = fmt.Errorf("%w: malformed login name", ErrBadCredentials)
	// ErrForbidden: the password was right but the user may not log in
	// (store state not active, or the sync rules skip them) (403).
	ErrForbidden = errors.New("user is not allowed to log in")
	// ErrPasswordChangeRequired: the password was right but the directory
	// says it has expired or must be changed first (SPEC §13, 403
	// password_change_required); POST /auth/v4/public/password changes it.
	ErrPasswordChangeRequired = errors.New("the password has expired or must be changed")
	// ErrAccountLocked: the directory holds the account in a temporary
	// lockout (ppolicy pwdAccountLockedTime, AD lockoutTime / data 775):
	// 403 account_locked, the store state unchanged (SPEC §13).
	ErrAccountLocked = errors.New("the account is temporarily locked in the directory")
	// ErrPasswordRefused: the directory refused the new password; a
	// *PasswordRefusedError carries its reason (422).
	ErrPasswordRefused = errors.New("the directory refused the new password")
	// ErrTLSRequired: the directory (AD) changes passwords only over an
	// encrypted connection and is configured without one (422).
	ErrTLSRequired = errors.New("the directory changes passwords only over LDAPS or StartTLS")
	// ErrNotDirectoryUser: a password change asked for a local user, whose
	// password only an administrator sets (422).
	ErrNotDirectoryUser = errors.New("only directory users change their password here")
	// ErrAmbiguousDirectory: several directories share the name's domain
	// and the request did not pick one (400).
	ErrAmbiguousDirectory = errors.New("several directories match the login domain; choose a directory")
	// ErrUnknownDirectory: the request named a directory that does not
	// exist (400).
	ErrUnknownDirectory = errors.New("unknown directory")
	// ErrUnavailable: the directory could not be asked (503).
	ErrUnavailable = errors.New("directory unavailable")
	// ErrNoSession: no valid session (absent, malformed, unknown, expired,
	// idle too long, or its user is no longer active) (401).
	ErrNoSession = errors.New("no valid session")
)

// RateLimitedError is returned when too many failed logins were made for
// the name or from the client address (429 with Retry-After).
type RateLimitedError struct {
	// RetryAfter is when the oldest counted failure leaves the window.
	RetryAfter time.Duration
	// PerAddress tells which limit was hit (logged, not answered).
	PerAddress bool
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("too many failed logins; retry after %s", e.RetryAfter.Round(time.Second))
}

// PasswordRefusedError is the directory's refusal of a new password, with
// its reason in words (too short, in history, too soon).
type PasswordRefusedError struct{ Reason string }

func (e *PasswordRefusedError) Error() string { return ErrPasswordRefused.Error() + ": " + e.Reason }
func (e *PasswordRefusedError) Unwrap() error { return ErrPasswordRefused }
