package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// More sentinels, beside those of directory.go.
var (
	// ErrAmbiguousUser: the login name matched more than one entry. The
	// login path refuses rather than guess (wrapped with ErrBadCredentials by
	// Authenticate).
	ErrAmbiguousUser = errors.New("login name matches more than one directory entry")
	// ErrClosed: the client was closed (directory removed or reloaded).
	ErrClosed = errors.New("directory client closed")
)

// Kinds of ReadError, stable strings for logs and run records.
const (
	KindSizeLimit    = "size_limit_exceeded"
	KindTimeLimit    = "time_limit_exceeded"
	KindAdminLimit   = "admin_limit_exceeded"
	KindReferral     = "referral"
	KindMissingPage  = "missing_page"
	KindStalledPage  = "paging_stalled"
	KindLDAPError    = "ldap_error" // any other result code: the answer cannot be trusted
	KindBusy         = "busy"
	KindUnavailable  = "unavailable"
	KindNetwork      = "network"
	KindConnLost     = "connection_lost"
	KindTimeout      = "timeout"
	KindTLS          = "tls"
	KindBindRefused  = "service_bind_refused"
	KindCanceled     = "canceled"
	KindClosed       = "closed"
	KindInvalidCreds = "invalid_credentials"
)

// ReadError is every directory failure this package returns: which operation,
// against which server, the LDAP result code (0 when none came back), a
// stable Kind, and the cause. errors.Is matches its class (ErrUnavailable,
// ErrIncompleteRead, ...) and the cause, so the syncer branches on the
// sentinel and records Kind and Code.
type ReadError struct {
	Op    string // read_users, read_groups, search, bind, dial, check
	URL   string // server, when known
	Code  uint16 // LDAP result code; 0 if the server sent none
	Kind  string // one of the Kind* constants
	Class error  // ErrUnavailable, ErrIncompleteRead, ErrClosed, ... (nil: only Err)
	Err   error  // the underlying error
}

func (e *ReadError) Error() string {
	var b strings.Builder
	b.WriteString("ldap ")
	b.WriteString(e.Op)
	if e.URL != "" {
		b.WriteString(" ")
		b.WriteString(e.URL)
	}
	b.WriteString(": ")
	if e.Class != nil {
		b.WriteString(e.Class.Error())
		b.WriteString(": ")
	}
	b.WriteString(e.Kind)
	if e.Code != 0 && e.Code < ldap.ErrorNetwork {
		fmt.Fprintf(&b, " (result %d %s)", e.Code, ldap.LDAPResultCodeMap[e.Code])
	}
	if e.Err != nil {
		msg := e.Err.Error()
		if le, ok := e.Err.(*ldap.Error); ok && le.Err != nil {
			// Code and name are printed above; keep only the diagnostic.
			msg = le.Err.Error()
		}
		if msg != "" {
			b.WriteString(": ")
			b.WriteString(msg)
		}
	}
	return b.String()
}

// Unwrap exposes both the class sentinel and the cause.
func (e *ReadError) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.Class != nil {
		out = append(out, e.Class)
	}
	if e.Err != nil {
		out = append(out, e.Err)
	}
	return out
}

// callbackError carries an error returned by the caller's fn through the
// read machinery untouched: it is not a directory failure.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }

var (
	errMissingPage = errors.New("server answered a paged search without a paging control")
	errStalled     = errors.New("paging cookie stopped making progress")
)

// classify turns an error from go-ldap or the network into a ReadError.
// ctx decides between "the server failed" and "we were told to stop": a
// connection closed because ctx ended is reported as the context's error.
func classify(ctx context.Context, op, url string, err error) error {
	if err == nil {
		return nil
	}
	var re *ReadError
	if errors.As(err, &re) {
		return err
	}
	for _, known := range []error{ErrUserNotFound, ErrAmbiguousUser, ErrBadCredentials,
		ErrAccountDisabled, ErrAccountLocked, ErrAccountExpired, ErrPasswordChangeRequired,
		ErrPasswordRefused, ErrTLSRequired, ErrUnavailable, ErrIncompleteRead, ErrClosed} {
		if errors.Is(err, known) {
			return err
		}
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		// A deadline is a timeout of the directory from the caller's view;
		// a cancellation is the caller's decision, not a directory failure,
		// but the read is still unusable, so keep ErrUnavailable as its class.
		kind := KindCanceled
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			kind = KindTimeout
		}
		return &ReadError{Op: op, URL: url, Kind: kind, Class: ErrUnavailable, Err: ctxErr}
	}
	e := &ReadError{Op: op, URL: url, Err: err}
	var le *ldap.Error
	if errors.As(err, &le) {
		e.Code = le.ResultCode
		switch le.ResultCode {
		case ldap.LDAPResultSizeLimitExceeded:
			e.Kind, e.Class = KindSizeLimit, ErrIncompleteRead
		case ldap.LDAPResultTimeLimitExceeded:
			e.Kind, e.Class = KindTimeLimit, ErrIncompleteRead
		case ldap.LDAPResultAdminLimitExceeded:
			e.Kind, e.Class = KindAdminLimit, ErrIncompleteRead
		case ldap.LDAPResultReferral:
			// The base itself lives on another server: what we would read
			// here is not the directory the operator configured.
			e.Kind, e.Class = KindReferral, ErrIncompleteRead
		case ldap.LDAPResultBusy:
			e.Kind, e.Class = KindBusy, ErrUnavailable
		case ldap.LDAPResultUnavailable:
			e.Kind, e.Class = KindUnavailable, ErrUnavailable
		case ldap.LDAPResultInvalidCredentials:
			e.Kind, e.Class = KindInvalidCreds, ErrBadCredentials
		case ldap.ErrorNetwork:
			e.Kind, e.Class = networkKind(le.Err), ErrUnavailable
		default:
			if le.ResultCode >= ldap.ErrorNetwork {
				// go-ldap's own codes (unexpected message, bad packet):
				// the conversation broke down.
				e.Kind, e.Class = KindNetwork, ErrUnavailable
			} else {
				e.Kind, e.Class = KindLDAPError, ErrIncompleteRead
			}
		}
		return e
	}
	e.Kind, e.Class = networkKind(err), ErrUnavailable
	return e
}

func networkKind(err error) string {
	var ne net.Error
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &recordErr):
		return KindTLS
	case errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	case err != nil && strings.Contains(err.Error(), "timed out"):
		// go-ldap's per-request timeout ("ldap: connection timed out").
		return KindTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		err != nil && (strings.Contains(err.Error(), "connection closed") ||
			strings.Contains(err.Error(), "response channel closed") ||
			strings.Contains(err.Error(), "unable to read LDAP response")):
		return KindConnLost
	}
	return KindNetwork
}

// adSubCode extracts the "data XXX" sub-code of an Active Directory bind
// diagnostic, e.g. "80090308: LdapErr: DSID-0C09041C, comment:
// AcceptSecurityContext error, data 775, v4563".
var adSubCode = regexp.MustCompile(`(?i)\bdata ([0-9a-f]{3,8})\b`)

// bindFailure maps a failed user bind to the login sentinels, from the AD
// "data" sub-code or the password policy control. u is the entry found
// for the bind: its disabled flag tells ppolicy's permanent lock (an
// administrator's 000001010000Z) from a lockout after failed binds.
func (l *LDAP) bindFailure(ctx context.Context, url string, err error, ctls []ldap.Control, u User) error {
	mapped, sub := bindFailure(ctx, url, err, ctls, u.Disabled)
	if sub != "" {
		l.log.Debug("ldap bind refused", "directory", l.s.name, "dn", u.DN, "ad_sub_code", sub)
	}
	return mapped
}

func bindFailure(ctx context.Context, url string, err error, ctls []ldap.Control, disabled bool) (mapped error, sub string) {
	var le *ldap.Error
	if errors.As(err, &le) {
		switch le.ResultCode {
		case ldap.LDAPResultInvalidCredentials:
			if m := adSubCode.FindStringSubmatch(le.Err.Error()); m != nil {
				sub = strings.ToLower(m[1])
			}
			switch sub {
			case "533": // ERROR_ACCOUNT_DISABLED
				return fmt.Errorf("%w (AD 49/data 533)", ErrAccountDisabled), sub
			case "775": // ERROR_ACCOUNT_LOCKED_OUT
				return fmt.Errorf("%w (AD 49/data 775)", ErrAccountLocked), sub
			case "701": // ERROR_ACCOUNT_EXPIRED: only after a right password
				return fmt.Errorf("%w (AD 49/data 701)", ErrAccountExpired), sub
			case "532", "773": // ERROR_PASSWORD_EXPIRED, ERROR_PASSWORD_MUST_CHANGE
				return fmt.Errorf("%w (AD 49/data %s)", ErrPasswordChangeRequired, sub), sub
			}
			switch code, mustChange := policyVerdict(ctls); {
			case code == ppAccountLocked && disabled:
				return fmt.Errorf("%w (password policy: locked by an administrator)", ErrAccountDisabled), sub
			case code == ppAccountLocked:
				return fmt.Errorf("%w (password policy: accountLocked)", ErrAccountLocked), sub
			case code == ppPasswordExpired, mustChange:
				// ppolicy and 389-ds check expiry only once the password
				// matched.
				return fmt.Errorf("%w (password policy: password expired)", ErrPasswordChangeRequired), sub
			}
			// 52e (bad password), 525 (no such user): a refused login
			// without more detail.
			return fmt.Errorf("%w (result 49)", ErrBadCredentials), sub
		case ldap.LDAPResultUnwillingToPerform:
			// 389-ds answers a bind of an nsAccountLock'ed account with 53
			// "Account inactivated. Contact system administrator."
			return fmt.Errorf("%w (result 53: %s)", ErrAccountDisabled, le.Err.Error()), ""
		}
	}
	return classify(ctx, "bind", url, err), ""
}
