package web

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/auth"
	"github.com/ldapgate/ldapgate/respond"
)

type passwordRequest struct {
	Email       string `json:"email"`
	Username    string `json:"username"`
	Directory   dirRef `json:"directory"`
	OldPassword string `json:"old_password"`
	NewPassword string `json:"new_password"`
}

// passwordChange is POST /auth/v4/public/password (SPEC §13): the user's
// own password change in the directory, answered like the token login.
func (s *Server) passwordChange(ctx *fasthttp.RequestCtx, st *settings) {
	body, err := readBody(ctx, maxLoginBody)
	if err != nil {
		respond.Error(ctx, fasthttp.StatusRequestEntityTooLarge, "body_too_large", "request body too large", nil)
		return
	}
	var in passwordRequest
	if err := json.Unmarshal(body, &in); err != nil {
		respond.Error(ctx, fasthttp.StatusBadRequest, "bad_json", "the body is not a valid password change request", nil)
		return
	}
	name := in.Email
	if name == "" {
		name = in.Username
	}
	res, err := s.d.Auth.ChangePassword(ctx, auth.ChangeRequest{
		Name: name, Directory: string(in.Directory), OldPassword: in.OldPassword, NewPassword: in.NewPassword,
		ClientIP: s.clientIP(ctx, st),
	})
	if err != nil {
		loginError(ctx, err)
		return
	}
	setSessionCookie(ctx, st, res.Token, res.ExpiresAt)
	noStore(ctx)
	respond.OK(ctx, tokenAnswer{
		ID: strconv.FormatUint(res.User.ID, 10), Token: res.Token,
		ExpiresAt: res.ExpiresAt.UTC().Format(time.RFC3339), Confirmed: true,
	})
}
