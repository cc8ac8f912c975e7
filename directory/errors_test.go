package directory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestClassify(t *testing.T) {
	ldapErr := func(code uint16, msg string) error { return ldap.NewError(code, errors.New(msg)) }
	timeoutErr := &net.OpError{Op: "dial", Err: &timeoutError{}}
	for _, tc := range []struct {
		name  string
		err   error
		class error
		kind  string
		code  uint16
	}{
		{"size limit", ldapErr(4, ""), ErrIncompleteRead, KindSizeLimit, 4},
		{"time limit", ldapErr(3, ""), ErrIncompleteRead, KindTimeLimit, 3},
		{"admin limit", ldapErr(11, ""), ErrIncompleteRead, KindAdminLimit, 11},
		{"referral", ldapErr(10, ""), ErrIncompleteRead, KindReferral, 10},
		{"no such object", ldapErr(32, ""), ErrIncompleteRead, KindLDAPError, 32},
		{"insufficient access", ldapErr(50, ""), ErrIncompleteRead, KindLDAPError, 50},
		{"busy", ldapErr(51, ""), ErrUnavailable, KindBusy, 51},
		{"unavailable", ldapErr(52, ""), ErrUnavailable, KindUnavailable, 52},
		{"go-ldap request timeout", ldapErr(ldap.ErrorNetwork, "ldap: connection timed out"), ErrUnavailable, KindTimeout, ldap.ErrorNetwork},
		{"connection closed", ldapErr(ldap.ErrorNetwork, "ldap: connection closed"), ErrUnavailable, KindConnLost, ldap.ErrorNetwork},
		{"response channel closed", ldapErr(ldap.ErrorNetwork, "ldap: response channel closed"), ErrUnavailable, KindConnLost, ldap.ErrorNetwork},
		{"unexpected response", ldapErr(ldap.ErrorUnexpectedResponse, "x"), ErrUnavailable, KindNetwork, ldap.ErrorUnexpectedResponse},
		{"refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, ErrUnavailable, KindNetwork, 0},
		{"net timeout", timeoutErr, ErrUnavailable, KindTimeout, 0},
		{"eof", io.EOF, ErrUnavailable, KindConnLost, 0},
		{"wrapped eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), ErrUnavailable, KindConnLost, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := classify(context.Background(), "read_users", "ldap://x", tc.err)
			var re *ReadError
			if !errors.As(err, &re) {
				t.Fatalf("classify(%v) = %T %v, want *ReadError", tc.err, err, err)
			}
			if !errors.Is(err, tc.class) || re.Kind != tc.kind || re.Code != tc.code {
				t.Fatalf("classify(%v) = class %v kind %q code %d; want %v %q %d", tc.err, re.Class, re.Kind, re.Code, tc.class, tc.kind, tc.code)
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("cause lost: %v does not wrap %v", err, tc.err)
			}
			// The two read classes never overlap: the syncer branches on them.
			if errors.Is(err, ErrUnavailable) == errors.Is(err, ErrIncompleteRead) {
				t.Fatalf("%v is both or neither of ErrUnavailable/ErrIncompleteRead", err)
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassifyContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := classify(ctx, "read_users", "", ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: response channel closed")))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("cancelled read = %v, want context.Canceled and ErrUnavailable", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 0)
	defer dcancel()
	<-dctx.Done()
	err = classify(dctx, "read_users", "", io.EOF)
	var re *ReadError
	if !errors.As(err, &re) || re.Kind != KindTimeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline = %v, want kind timeout wrapping DeadlineExceeded", err)
	}
}

func TestClassifyKeepsSentinels(t *testing.T) {
	for _, e := range []error{
		fmt.Errorf("x: %w", ErrUserNotFound), fmt.Errorf("x: %w", ErrAmbiguousUser),
		&ReadError{Kind: KindMissingPage, Class: ErrIncompleteRead, Err: errMissingPage},
	} {
		if got := classify(context.Background(), "search", "", e); got != e {
			t.Errorf("classify(%v) = %v, want it unchanged", e, got)
		}
	}
}

func TestReadErrorMessage(t *testing.T) {
	err := classify(context.Background(), "read_users", "ldap://127.0.0.1:1", ldap.NewError(4, errors.New("")))
	want := "ldap read_users ldap://127.0.0.1:1: directory read incomplete: size_limit_exceeded (result 4 Size Limit Exceeded)"
	if got := err.Error(); got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestBindFailure(t *testing.T) {
	ad := func(sub string) error {
		return ldap.NewError(49, fmt.Errorf("80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data %s, v4563\x00", sub))
	}
	pp := func(code int8) []ldap.Control {
		c := ldap.NewControlBeheraPasswordPolicy()
		c.Error = code
		return []ldap.Control{c}
	}
	for _, tc := range []struct {
		name     string
		err      error
		ctls     []ldap.Control
		disabled bool
		want     error
		sub      string
	}{
		{"plain 49", ldap.NewError(49, errors.New("")), nil, false, ErrBadCredentials, ""},
		{"AD bad password 52e", ad("52e"), nil, false, ErrBadCredentials, "52e"},
		{"AD disabled 533", ad("533"), nil, false, ErrAccountDisabled, "533"},
		{"AD locked 775", ad("775"), nil, false, ErrAccountLocked, "775"},
		{"AD password expired 532", ad("532"), nil, false, ErrPasswordChangeRequired, "532"},
		{"AD must change 773", ad("773"), nil, false, ErrPasswordChangeRequired, "773"},
		{"AD account expired 701", ad("701"), nil, false, ErrAccountExpired, "701"},
		{"ppolicy passwordExpired", ldap.NewError(49, errors.New("")), pp(ppPasswordExpired), false, ErrPasswordChangeRequired, ""},
		{"ppolicy accountLocked, temporary", ldap.NewError(49, errors.New("")), pp(ppAccountLocked), false, ErrAccountLocked, ""},
		{"ppolicy accountLocked, by an administrator", ldap.NewError(49, errors.New("")), pp(ppAccountLocked), true, ErrAccountDisabled, ""},
		{"389-ds password expired control", ldap.NewError(49, errors.New("password expired!")),
			[]ldap.Control{&ldap.ControlVChuPasswordMustChange{MustChange: true}}, false, ErrPasswordChangeRequired, ""},
		{"389-ds inactivated 53", ldap.NewError(53, errors.New("Account inactivated. Contact system administrator.")), nil, false, ErrAccountDisabled, ""},
		{"busy", ldap.NewError(51, errors.New("")), nil, false, ErrUnavailable, ""},
		{"network", ldap.NewError(ldap.ErrorNetwork, errors.New("ldap: connection closed")), nil, false, ErrUnavailable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, sub := bindFailure(context.Background(), "ldap://x", tc.err, tc.ctls, tc.disabled)
			if !errors.Is(got, tc.want) || sub != tc.sub {
				t.Fatalf("bindFailure = %v, %q; want %v, %q", got, sub, tc.want, tc.sub)
			}
			for _, other := range []error{ErrBadCredentials, ErrAccountDisabled, ErrAccountLocked, ErrUnavailable,
				ErrAccountExpired, ErrPasswordChangeRequired} {
				if other != tc.want && errors.Is(got, other) {
					t.Fatalf("bindFailure = %v is also %v", got, other)
				}
			}
		})
	}
}
