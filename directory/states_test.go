package directory

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func TestFileTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"0", time.Time{}},                   // never (AD's default)
		{"9223372036854775807", time.Time{}}, // never
		{"", time.Time{}},
		{"junk", time.Time{}},
		{"-1", time.Time{}},
		{"116444736000000000", time.Unix(0, 0).UTC()},
		{"133536384000000000", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{" 133536384000000001 ", time.Date(2024, 2, 29, 0, 0, 0, 100, time.UTC)},
	} {
		if got := fileTime(tc.in); !got.Equal(tc.want) {
			t.Errorf("fileTime(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestGeneralizedTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"not a time", time.Time{}},
		{"20240229123000Z", time.Date(2024, 2, 29, 12, 30, 0, 0, time.UTC)},
		{"20240229143000+0200", time.Date(2024, 2, 29, 12, 30, 0, 0, time.UTC)},
		{"000001010000Z", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if got := generalizedTime(tc.in); !got.Equal(tc.want) {
			t.Errorf("generalizedTime(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestBoundState: what a successful bind answers besides "right password"
// (SPEC §13), with a fixed now.
func TestBoundState(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		u    User
		code int8
		want error
	}{
		{"nothing", User{}, ppNoError, nil},
		{"account expired", User{AccountExpiresAt: now.Add(-time.Second)}, ppNoError, ErrAccountExpired},
		{"account expires later", User{AccountExpiresAt: now.Add(time.Second)}, ppNoError, nil},
		{"changeAfterReset control", User{}, ppChangeAfterReset, ErrPasswordChangeRequired},
		{"pwdReset read from the entry", User{PasswordMustChange: true}, ppNoError, ErrPasswordChangeRequired},
		{"krbPasswordExpiration past", User{PasswordExpiresAt: now.Add(-time.Second)}, ppNoError, ErrPasswordChangeRequired},
		{"krbPasswordExpiration later", User{PasswordExpiresAt: now.Add(time.Hour)}, ppNoError, nil},
		{"expired account and password: the account first", User{AccountExpiresAt: now, PasswordMustChange: true}, ppNoError, ErrAccountExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ctls []ldap.Control
			if tc.code != ppNoError {
				c := ldap.NewControlBeheraPasswordPolicy()
				c.Error = tc.code
				ctls = append(ctls, c)
			}
			err := boundState(ctls, tc.u, now)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("boundState = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestChangeFailure: a refused password change in words, from the policy
// control and the server's diagnostic; a wrong old password stays a
// credential failure.
func TestChangeFailure(t *testing.T) {
	l := &LDAP{s: &settings{name: "t"}, log: slog.New(slog.DiscardHandler)}
	pp := func(code int8) []ldap.Control {
		c := ldap.NewControlBeheraPasswordPolicy()
		c.Error = code
		return []ldap.Control{c}
	}
	for _, tc := range []struct {
		name    string
		err     error
		ctls    []ldap.Control
		want    error
		reason  string // a substring of PasswordRefusedError.Reason
		without string // never in the reason
	}{
		{"ppolicy too short", ldap.NewError(19, errors.New("Password fails quality checking policy")), pp(ppPasswordTooShort),
			ErrPasswordRefused, "too short", ""},
		{"ppolicy in history", ldap.NewError(19, errors.New("Password is in history of old passwords")), pp(ppPasswordInHistory),
			ErrPasswordRefused, "used before", ""},
		{"Samba too short", ldap.NewError(19, errors.New("0000052D: Constraint violation - check_password_restrictions: the password is too short. It should be equal or longer than 12 characters!")),
			nil, ErrPasswordRefused, "the password is too short", "0000052D"},
		{"AD 52D with DSID noise", ldap.NewError(19, errors.New("0000052D: AtrErr: DSID-03191083, #1:\n\t0: 0000052D: DSID-03191083, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)")),
			nil, ErrPasswordRefused, "domain's password policy", "DSID"},
		{"AD wrong old password", ldap.NewError(19, errors.New("00000056: Constraint violation - The old password specified doesn't match!")),
			nil, ErrBadCredentials, "", ""},
		{"wrong old password 49", ldap.NewError(49, errors.New("")), nil, ErrBadCredentials, "", ""},
		{"389-ds needs TLS", ldap.NewError(13, errors.New("Operation requires a secure connection.")), nil, ErrTLSRequired, "", ""},
		{"busy", ldap.NewError(51, errors.New("")), nil, ErrUnavailable, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := l.changeFailure(context.Background(), "ldap://x", tc.err, tc.ctls)
			if !errors.Is(err, tc.want) {
				t.Fatalf("changeFailure = %v, want %v", err, tc.want)
			}
			var r *PasswordRefusedError
			if errors.As(err, &r) {
				if !strings.Contains(r.Reason, tc.reason) || (tc.without != "" && strings.Contains(r.Reason, tc.without)) {
					t.Fatalf("reason %q, want %q without %q", r.Reason, tc.reason, tc.without)
				}
			}
		})
	}
}
