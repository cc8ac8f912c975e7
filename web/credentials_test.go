package web

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/auth"
)

// TestStripCredentials: every carrier ldapgate reads a token or password
// from is removed before proxying, whatever separator the scheme used;
// values ldapgate does not read pass through.
func TestStripCredentials(t *testing.T) {
	tok := strings.Repeat("A", auth.TokenLen)
	for _, tc := range []struct {
		name, authz, xsrf string
		keepAuthz         bool
		keepXSRF          bool
	}{
		{name: "bearer", authz: "Bearer " + tok},
		{name: "bearer lower case", authz: "bearer " + tok},
		{name: "bearer tab", authz: "Bearer\t" + tok},
		{name: "bearer two spaces", authz: "Bearer  " + tok},
		{name: "basic", authz: "Basic dXNlcjpwdw=="},
		{name: "xsrf", xsrf: tok},
		{name: "xsrf padded", xsrf: " " + tok + " "},
		{name: "foreign bearer", authz: "Bearer platform.jwt.value", keepAuthz: true},
		{name: "foreign scheme", authz: "Token " + tok, keepAuthz: true},
		{name: "foreign xsrf", xsrf: "angular-xsrf", keepXSRF: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			if tc.authz != "" {
				h.Set("Authorization", tc.authz)
			}
			if tc.xsrf != "" {
				h.Set("X-Xsrf-Token", tc.xsrf)
			}
			stripCredentials(&h)
			if got := string(h.Peek("Authorization")); (got != "") != tc.keepAuthz {
				t.Errorf("Authorization %q after strip: %q", tc.authz, got)
			}
			if got := string(h.Peek("X-Xsrf-Token")); (got != "") != tc.keepXSRF {
				t.Errorf("X-Xsrf-Token %q after strip: %q", tc.xsrf, got)
			}
		})
	}
}
