package directory

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/go-ldap/ldap/v3"
)

// PasswordRefusedError is the directory's refusal of a new password, with
// its reason in words a user can act on (SPEC §13: 422 with the reason).
type PasswordRefusedError struct {
	// Reason is shown to the user: the password policy's verdict and the
	// server's own diagnostic, never a password.
	Reason string
	// Code is the LDAP result code (0 when none).
	Code uint16
}

func (e *PasswordRefusedError) Error() string { return ErrPasswordRefused.Error() + ": " + e.Reason }
func (e *PasswordRefusedError) Unwrap() error { return ErrPasswordRefused }

// policyControls asks the server for its password policy verdict (the
// Behera draft control, which OpenLDAP's ppolicy and 389-ds answer) on a
// bind or password change. AD has no such control: its verdict is the
// "data" sub-code of the diagnostic.
func (l *LDAP) policyControls() []ldap.Control {
	if l.s.ad() {
		return nil
	}
	return []ldap.Control{ldap.NewControlBeheraPasswordPolicy()}
}

// Behera draft error codes (draft-behera-ldap-password-policy-10 §6.2).
const (
	ppPasswordExpired            = 0
	ppAccountLocked              = 1
	ppChangeAfterReset           = 2
	ppPasswordModNotAllowed      = 3
	ppMustSupplyOldPassword      = 4
	ppInsufficientQuality        = 5
	ppPasswordTooShort           = 6
	ppPasswordTooYoung           = 7
	ppPasswordInHistory          = 8
	ppNoError               int8 = -1
)

// policyVerdict returns the Behera error in ctls (ppNoError if none) and
// whether 389-ds's "password must change/expired" control came back.
func policyVerdict(ctls []ldap.Control) (code int8, mustChange bool) {
	code = ppNoError
	for _, c := range ctls {
		switch v := c.(type) {
		case *ldap.ControlBeheraPasswordPolicy:
			code = v.Error
		case *ldap.ControlVChuPasswordMustChange:
			mustChange = mustChange || v.MustChange
		}
	}
	return code, mustChange
}

// boundState is what a successful bind tells besides "the password is
// right": a password that must be changed first, or an account past its
// expiry (checked here because a plain 389-ds, unlike FreeIPA's KDC,
// does not enforce krbPrincipalExpiration on an LDAP bind).
func boundState(ctls []ldap.Control, u User, now time.Time) error {
	if !u.AccountExpiresAt.IsZero() && !now.Before(u.AccountExpiresAt) {
		return fmt.Errorf("%w (expired %s)", ErrAccountExpired, u.AccountExpiresAt.Format(time.RFC3339))
	}
	code, mustChange := policyVerdict(ctls)
	switch {
	case code == ppChangeAfterReset || code == ppPasswordExpired:
		return fmt.Errorf("%w (password policy control: %s)", ErrPasswordChangeRequired, ldap.BeheraPasswordPolicyErrorMap[code])
	case mustChange:
		return fmt.Errorf("%w (password must change control)", ErrPasswordChangeRequired)
	case u.PasswordMustChange:
		return fmt.Errorf("%w (reset by an administrator)", ErrPasswordChangeRequired)
	case !u.PasswordExpiresAt.IsZero() && !now.Before(u.PasswordExpiresAt):
		return fmt.Errorf("%w (expired %s)", ErrPasswordChangeRequired, u.PasswordExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// findForLogin is FindUser for a login or a password change: a name that
// is not there (or is ambiguous) is ErrBadCredentials, after a bind as a
// DN that cannot exist with the same password, the way a real user's bind
// goes (a fresh connection): a missing name must cost what a wrong
// password costs, or its absence shows in the answer's timing (SPEC §5).
func (l *LDAP) findForLogin(ctx context.Context, username, password string) (User, error) {
	if !searchable(username) {
		// No directory holds such a name, whoever asks: nothing to hide.
		return User{}, fmt.Errorf("%w: login name empty or with control characters: %w", ErrBadCredentials, ErrUserNotFound)
	}
	u, err := l.FindUser(ctx, username)
	switch {
	case errors.Is(err, ErrUserNotFound), errors.Is(err, ErrAmbiguousUser):
		if _, berr := l.bindAs(ctx, User{DN: l.noSuchDN}, password); errors.Is(berr, ErrUnavailable) {
			return User{}, berr
		}
		return User{}, fmt.Errorf("%w: %w", ErrBadCredentials, err)
	}
	return u, err
}

// ChangePassword binds as the user with the old password and changes it:
// RFC 3062 Password Modify (OpenLDAP, 389-ds, FreeIPA), or on AD a modify
// deleting the old unicodePwd and adding the new one, which AD accepts
// only over an encrypted connection. A must-change account may still bind
// for this on OpenLDAP (ppolicy restricts the connection to the change);
// AD refuses such a bind (data 532/773) after checking the password, so
// there the change goes over a service-account connection instead — still
// a change, not a reset: AD verifies the old password in the delete and
// applies the history and age rules.
func (l *LDAP) ChangePassword(ctx context.Context, username, oldPassword, newPassword string) (User, error) {
	defer l.observe("password", time.Now())
	if oldPassword == "" {
		return User{}, fmt.Errorf("%w: empty password", ErrBadCredentials)
	}
	if newPassword == "" {
		return User{}, &PasswordRefusedError{Reason: "the new password is empty"}
	}
	if l.s.ad() && !l.s.encrypted() {
		// Before anything else, for every name alike: a known name must
		// not answer otherwise than an unknown one (SPEC §5).
		return User{}, fmt.Errorf("%w (directory %q: use ldaps:// or start_tls)", ErrTLSRequired, l.s.name)
	}
	u, err := l.findForLogin(ctx, username, oldPassword)
	if err != nil {
		return User{}, err
	}
	c, err := l.dial(ctx, "password", false)
	if err != nil {
		return User{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if l.s.ad() && !c.isTLS() {
		// Before the bind: no password goes over this connection.
		return User{}, fmt.Errorf("%w (directory %q: use ldaps:// or start_tls)", ErrTLSRequired, l.s.name)
	}
	ctls, err := c.Bind(u.DN, oldPassword, l.policyControls())
	if err != nil {
		mapped := l.bindFailure(ctx, c.url, err, ctls, u)
		if l.s.ad() && errors.Is(mapped, ErrPasswordChangeRequired) {
			return l.changeADAsService(ctx, u, oldPassword, newPassword)
		}
		return User{}, mapped
	}
	if err := boundState(nil, u, time.Now()); errors.Is(err, ErrAccountExpired) {
		return User{}, err
	}
	if l.s.ad() {
		err = c.Modify(unicodePwdChange(u.DN, oldPassword, newPassword))
	} else {
		ctls, err = c.PasswordModify(oldPassword, newPassword, l.policyControls())
	}
	if err != nil {
		return User{}, l.changeFailure(ctx, c.url, err, ctls)
	}
	l.log.Info("password changed in the directory", "directory", l.s.name, "dn", u.DN)
	u.PasswordMustChange, u.PasswordExpiresAt = false, time.Time{}
	return u, nil
}

// changeADAsService changes an AD password the user may not bind with
// (expired, or must change at next logon).
func (l *LDAP) changeADAsService(ctx context.Context, u User, oldPassword, newPassword string) (User, error) {
	c, err := l.dial(ctx, "password", true)
	if err != nil {
		return User{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if !c.isTLS() {
		return User{}, fmt.Errorf("%w (directory %q: use ldaps:// or start_tls)", ErrTLSRequired, l.s.name)
	}
	if err := c.Modify(unicodePwdChange(u.DN, oldPassword, newPassword)); err != nil {
		return User{}, l.changeFailure(ctx, c.url, err, nil)
	}
	l.log.Info("password changed in the directory", "directory", l.s.name, "dn", u.DN, "must_change", true)
	u.PasswordMustChange, u.PasswordExpiresAt = false, time.Time{}
	return u, nil
}

// unicodePwdChange is AD's user password change: delete the old value and
// add the new one in one modify, each the quoted password in UTF-16LE.
func unicodePwdChange(dn, oldPassword, newPassword string) *ldap.ModifyRequest {
	req := ldap.NewModifyRequest(dn, nil)
	req.Delete("unicodePwd", []string{adPassword(oldPassword)})
	req.Add("unicodePwd", []string{adPassword(newPassword)})
	return req
}

func adPassword(pw string) string {
	u := utf16.Encode([]rune(`"` + pw + `"`))
	b := make([]byte, 2*len(u))
	for i, r := range u {
		b[2*i], b[2*i+1] = byte(r), byte(r>>8)
	}
	return string(b)
}

// Words for the policy control's refusals.
var policyWords = map[int8]string{
	ppPasswordModNotAllowed: "the directory does not let users change their own password",
	ppMustSupplyOldPassword: "the directory needs the current password",
	ppInsufficientQuality:   "the new password does not meet the directory's quality rules",
	ppPasswordTooShort:      "the new password is too short for the directory's policy",
	ppPasswordTooYoung:      "the password was changed too recently to be changed again yet",
	ppPasswordInHistory:     "the new password was used before; choose one not used recently",
}

// AD's "data" codes of a refused password change.
const (
	adInvalidPassword = "56"  // ERROR_INVALID_PASSWORD: the old password is wrong
	adPasswordPolicy  = "52d" // ERROR_PASSWORD_RESTRICTION
)

// changeFailure maps a refused password change: a wrong old password is
// ErrBadCredentials, a policy refusal a *PasswordRefusedError with words
// from the policy control and the server's diagnostic, the rest as any
// directory error.
func (l *LDAP) changeFailure(ctx context.Context, url string, err error, ctls []ldap.Control) error {
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode >= ldap.ErrorNetwork {
		return classify(ctx, "password", url, err)
	}
	diag := ""
	if le.Err != nil {
		diag = le.Err.Error()
	}
	sub := ""
	if m := adSubCode.FindStringSubmatch(diag); m != nil {
		sub = strings.TrimLeft(strings.ToLower(m[1]), "0")
	} else if m := adLeadingCode.FindStringSubmatch(diag); m != nil {
		sub = strings.TrimLeft(strings.ToLower(m[1]), "0")
	}
	if le.ResultCode == ldap.LDAPResultConfidentialityRequired {
		// 389-ds changes passwords only over TLS, like AD.
		return fmt.Errorf("%w (result 13: %s)", ErrTLSRequired, diag)
	}
	if le.ResultCode == ldap.LDAPResultInvalidCredentials || sub == adInvalidPassword {
		return fmt.Errorf("%w (password change: result %d)", ErrBadCredentials, le.ResultCode)
	}
	switch le.ResultCode {
	case ldap.LDAPResultConstraintViolation, ldap.LDAPResultUnwillingToPerform,
		ldap.LDAPResultInsufficientAccessRights, ldap.LDAPResultObjectClassViolation,
		ldap.LDAPResultInvalidAttributeSyntax:
	default:
		return classify(ctx, "password", url, err)
	}
	var reasons []string
	if code, _ := policyVerdict(ctls); code != ppNoError {
		if w, ok := policyWords[code]; ok {
			reasons = append(reasons, w)
		}
	}
	if sub == adPasswordPolicy && len(reasons) == 0 {
		reasons = append(reasons, "the new password does not meet the domain's password policy (length, complexity, history or minimum age)")
	}
	if d := diagnosticWords(diag); d != "" {
		reasons = append(reasons, "the directory says: "+d)
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "the directory refused the new password ("+ldap.LDAPResultCodeMap[le.ResultCode]+")")
	}
	l.log.Info("password change refused by the directory", "directory", l.s.name, "result", le.ResultCode, "reason", strings.Join(reasons, "; "))
	return &PasswordRefusedError{Reason: strings.Join(reasons, "; "), Code: le.ResultCode}
}

// adLeadingCode is the hex code AD and Samba put before a diagnostic:
// "0000052D: Constraint violation - ...".
var adLeadingCode = regexp.MustCompile(`^([0-9A-Fa-f]{8}): `)

// diagnosticWords keeps the readable part of a server diagnostic: without
// AD's hex prefix and DSID noise, printable, bounded.
func diagnosticWords(d string) string {
	if m := adLeadingCode.FindStringSubmatch(d); m != nil {
		d = d[len(m[0]):]
	}
	if strings.Contains(d, "DSID-") {
		// Real AD: "AtrErr: DSID-03191083, #1: ..." says nothing a user
		// can read; the data code was mapped above.
		return ""
	}
	d = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(d))
	if len(d) > 300 {
		d = d[:300]
	}
	return d
}
