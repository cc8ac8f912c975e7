package web

import (
	"cmp"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/auth"
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
	var in passwordRequest
	if !readJSON(ctx, &in, "the body is not a valid password change request") {
		return
	}
	res, err := s.d.Auth.ChangePassword(s.parent(), auth.ChangeRequest{
		Name: cmp.Or(in.Email, in.Username), Directory: string(in.Directory),
		OldPassword: in.OldPassword, NewPassword: in.NewPassword, ClientIP: s.clientIP(ctx, st),
	})
	s.answerLogin(ctx, st, res, err)
}
