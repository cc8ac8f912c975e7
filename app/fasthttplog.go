package app

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
)

// fasthttpLog routes fasthttp's own messages into the JSON log without the
// bytes a client sent (SPEC §8: a malformed request's raw bytes, which carry
// its Authorization, cookies and form, are never logged).
// SecureErrorLogMessage already keeps most of them out of fasthttp's errors,
// but not all (a request line without a second space is still quoted whole,
// path and all, and a path may hold a session token), and handlers' ctx
// loggers print the request URI. So the message is fasthttp's format with
// only arguments that cannot carry request bytes: addresses, numbers,
// durations, and errors cut at their first quote.
type fasthttpLog struct{ log *slog.Logger }

func (p fasthttpLog) Printf(format string, args ...any) {
	safe := make([]any, len(args))
	for i, a := range args {
		safe[i] = redactArg(a)
	}
	p.log.Warn(fmt.Sprintf(format, safe...), "component", "fasthttp")
}

func redactArg(a any) any {
	switch v := a.(type) {
	case net.Addr:
		return v.String()
	case int, int64, uint64, uint32, int32, uint, float64, bool, time.Duration:
		return v
	case error:
		return cutQuoted(v.Error())
	}
	return "[redacted]"
}

// cutQuoted keeps an error text up to its first quoted part or dump: what
// follows is data fasthttp copied from the request.
func cutQuoted(s string) string {
	if i := strings.IndexAny(s, "\"'`"); i >= 0 {
		s = s[:i] + "[redacted]"
	}
	if i := strings.Index(s, "contents:"); i >= 0 {
		s = s[:i] + "[redacted]"
	}
	return s
}
