package auth

import (
	"bytes"
	"context"
	"encoding/base64"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
)

// Header names predeclared so parsing a request allocates nothing.
var (
	headerAuthorization = []byte("Authorization")
	headerXSRF          = []byte("X-Xsrf-Token")
)

// ValidToken reports whether b has the shape of a session token: TokenLen
// characters of the base64url alphabet. Anything else is refused before
// hashing or any look-up.
func ValidToken(b []byte) bool {
	if len(b) != TokenLen {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// cutScheme returns the credentials of an Authorization value whose
// scheme is scheme (case-insensitive, RFC 9110 §11.1), or nil.
func cutScheme(v []byte, scheme string) []byte {
	if len(v) <= len(scheme) || !bytes.EqualFold(v[:len(scheme)], []byte(scheme)) {
		return nil
	}
	rest := v[len(scheme):]
	if rest[0] != ' ' && rest[0] != '\t' {
		return nil
	}
	return bytes.Trim(rest, " \t")
}

// ParseBearer returns the token of an "Authorization: Bearer <token>"
// value if it is a well-formed session token, else nil.
func ParseBearer(v []byte) []byte {
	if t := cutScheme(v, "Bearer"); ValidToken(t) {
		return t
	}
	return nil
}

// ParseBasic decodes an "Authorization: Basic base64(user:password)"
// value (RFC 7617). The password may contain ':'; the user may not.
func ParseBasic(v []byte) (user, password string, ok bool) {
	c := cutScheme(v, "Basic")
	if len(c) == 0 || len(c) > 4*(MaxNameLen+1024)/3+4 {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(string(c))
	if err != nil {
		return "", "", false
	}
	i := bytes.IndexByte(raw, ':')
	if i <= 0 {
		return "", "", false
	}
	return string(raw[:i]), string(raw[i+1:]), true
}

// RequestTokens returns the well-formed session tokens a request carries,
// in the order they are tried: Authorization Bearer, the x-xsrf-token
// header (auth v4 clients), the session cookie. Malformed ones are nil.
func RequestTokens(h *fasthttp.RequestHeader, cookieName string) [3][]byte {
	var out [3][]byte
	out[0] = ParseBearer(h.PeekBytes(headerAuthorization))
	if t := bytes.TrimSpace(h.PeekBytes(headerXSRF)); ValidToken(t) {
		out[1] = t
	}
	if cookieName != "" {
		if t := h.Cookie(cookieName); ValidToken(t) {
			out[2] = t
		}
	}
	return out
}

// RequestSession checks the session tokens of a request in order and
// returns the user of the first valid one, with that token.
func (s *Service) RequestSession(ctx context.Context, h *fasthttp.RequestHeader, cookieName string) (account.User, []byte, error) {
	toks := RequestTokens(h, cookieName)
	err := ErrNoSession
	for _, t := range toks {
		if t == nil {
			continue
		}
		u, e := s.CheckSession(ctx, t)
		if e == nil {
			return u, t, nil
		}
		if err == ErrNoSession { //nolint:errorlint // our own sentinel, never wrapped here
			err = e
		}
	}
	return account.User{}, nil, err
}
