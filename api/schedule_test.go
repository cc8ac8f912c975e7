package api

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestScheduleNext(t *testing.T) {
	// Wednesday 2026-03-04 10:30 UTC.
	now := time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)
	tests := []struct {
		expr   string
		status int
		want   []string
	}{
		{"hourly", 200, []string{"2026-03-04T11:00:00Z", "2026-03-04T12:00:00Z", "2026-03-04T13:00:00Z"}},
		{"daily 03:15", 200, []string{"2026-03-05T03:15:00Z", "2026-03-06T03:15:00Z", "2026-03-07T03:15:00Z"}},
		{"weekly mon 03:00", 200, []string{"2026-03-09T03:00:00Z", "2026-03-16T03:00:00Z", "2026-03-23T03:00:00Z"}},
		{"15 10 * * * 0", 200, []string{"2026-03-08T10:15:00Z", "2026-03-15T10:15:00Z", "2026-03-22T10:15:00Z"}},
		// Every year of the 6-field form is past: fewer than three times.
		{"0 12 1 1 1999 *", 200, []string{}},
		{"weekly someday 03:00", 422, nil},
		{"", 422, nil},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.SetRequestURI("/auth/v4/ldap/schedule")
			ctx.QueryArgs().Set("expr", tc.expr)
			scheduleNext(&ctx, now)
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("status %d, want %d: %s", got, tc.status, ctx.Response.Body())
			}
			if tc.status != 200 {
				return
			}
			var out struct{ Next []string }
			if err := json.Unmarshal(ctx.Response.Body(), &out); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out.Next, tc.want) {
				t.Fatalf("next %v, want %v", out.Next, tc.want)
			}
		})
	}
}
