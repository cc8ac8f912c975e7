package api

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ldapgate/ldapgate/respond"
	"github.com/ldapgate/ldapgate/schedule"
)

// nextRuns is how many run times GET /auth/v4/ldap/schedule answers: the
// console shows them under the schedule a connection is given.
const nextRuns = 3

// scheduleNext answers GET /auth/v4/ldap/schedule?expr=...: the next run
// times of a schedule as the scheduler computes them (the server's zone),
// so the console never re-implements the schedule grammar in JavaScript.
func scheduleNext(ctx *fasthttp.RequestCtx, now time.Time) {
	expr := string(ctx.QueryArgs().Peek("expr"))
	sch, err := schedule.Parse(expr)
	if err != nil {
		respond.Error(ctx, fasthttp.StatusUnprocessableEntity, "invalid_schedule", err.Error(), expr)
		return
	}
	next := make([]string, 0, nextRuns)
	for t := now; len(next) < nextRuns; {
		t = sch.Next(t)
		if t.IsZero() { // a 6-field schedule whose years are all past
			break
		}
		next = append(next, t.Format(time.RFC3339))
	}
	respond.OK(ctx, map[string][]string{"next": next})
}
