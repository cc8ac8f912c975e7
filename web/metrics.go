package web

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ldapgate/ldapgate/metrics"
)

// route is the bounded label of ldapgate_http_requests_total and
// ldapgate_http_request_duration_seconds: never the raw path.
type route int

const (
	routeLogin route = iota
	routeToken
	routeLogout
	routeWhoami
	routeVerify
	routeDirectories
	routeAdmin
	routeProxy
	routePublic
	routePassword
	numRoutes
)

var routeNames = [numRoutes]string{"login", "token", "logout", "whoami", "verify", "directories", "admin", "proxy", "public", "password"}

// routeMetrics resolves each (route, code) counter once: WithLabelValues
// per request would hash the labels and allocate on the proxy's hot path.
type routeMetrics struct {
	m     *metrics.Metrics
	dur   [numRoutes]prometheus.Observer
	codes [numRoutes][600]atomic.Pointer[counterBox]
}

type counterBox struct{ c prometheus.Counter }

func newRouteMetrics(m *metrics.Metrics) *routeMetrics {
	r := &routeMetrics{m: m}
	for i := range numRoutes {
		r.dur[i] = m.HTTPRequestDuration.WithLabelValues(routeNames[i])
	}
	return r
}

func (r *routeMetrics) observe(rt route, code int, start time.Time) {
	r.dur[rt].Observe(time.Since(start).Seconds())
	if code < 100 || code > 599 {
		code = 0
	}
	p := &r.codes[rt][code]
	b := p.Load()
	if b == nil {
		b = &counterBox{r.m.HTTPRequests.WithLabelValues(routeNames[rt], strconv.Itoa(code))}
		p.Store(b)
	}
	b.c.Inc()
}
