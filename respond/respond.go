// Package respond writes JSON answers in the shape of SPEC §5/§7: objects
// and lists on success, {"error":{"code","msg","value"}} on failure. Every
// handler uses it so clients see one error shape everywhere.
package respond

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

// ErrorBody is the error envelope.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the error itself: a stable machine code, a human message
// and an optional value (e.g. the conflicting names of a migration).
type ErrorDetail struct {
	Code  string `json:"code"`
	Msg   string `json:"msg"`
	Value any    `json:"value,omitempty"`
}

// List is the envelope of every listing.
type List[T any] struct {
	List []T `json:"list"`
	Size int `json:"size"`
}

// NewList wraps items; a nil slice is answered as [] (never null).
func NewList[T any](items []T) List[T] {
	if items == nil {
		items = []T{}
	}
	return List[T]{List: items, Size: len(items)}
}

var contentJSON = []byte("application/json")

// JSON writes v with status.
func JSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		Error(ctx, fasthttp.StatusInternalServerError, "internal", "could not encode the answer", nil)
		return
	}
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}

// OK writes v with 200; nil becomes {} (SPEC §7: never 204).
func OK(ctx *fasthttp.RequestCtx, v any) {
	if v == nil {
		v = struct{}{}
	}
	JSON(ctx, fasthttp.StatusOK, v)
}

// Error writes the error envelope with status.
func Error(ctx *fasthttp.RequestCtx, status int, code, msg string, value any) {
	b, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: code, Msg: msg, Value: value}})
	ctx.Response.Header.SetContentTypeBytes(contentJSON)
	ctx.SetStatusCode(status)
	ctx.SetBody(b)
}
