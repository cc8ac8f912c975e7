package auth

import (
	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/account"
)

// callerKey is the fasthttp user-value key under which the HTTP front
// stores the authenticated user of a request.
const callerKey = "ldapgate.caller"

// SetCaller records the request's authenticated user.
func SetCaller(ctx *fasthttp.RequestCtx, u *account.User) { ctx.SetUserValue(callerKey, u) }

// Caller returns the request's authenticated user, if any.
func Caller(ctx *fasthttp.RequestCtx) (*account.User, bool) {
	u, ok := ctx.UserValue(callerKey).(*account.User)
	return u, ok && u != nil
}
