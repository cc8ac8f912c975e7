package directory

import (
	"errors"
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
