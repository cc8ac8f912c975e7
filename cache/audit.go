package cache

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendAudit appends e's encoding to b (nil and the error when e cannot
// be encoded): the stores' one audit encoder.
func AppendAudit(b []byte, e *AuditEntry) ([]byte, error) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"at":`...)
	var err error
	if b, err = appendJSONTime(b, e.At); err != nil {
		return nil, err
	}
	b = append(b, `,"action":`...)
	b = appendJSONString(b, e.Action)
	b = append(b, `,"user_id":`...)
	b = strconv.AppendUint(b, e.UserID, 10)
	b = append(b, `,"username":`...)
	b = appendJSONString(b, e.Username)
	if e.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, e.Reason)
	}
	if len(e.Fields) > 0 {
		b = append(b, `,"fields":{`...)
		var buf [8]string
		keys := buf[:0]
		for k := range e.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			v := e.Fields[k]
			b = appendJSONString(b, k)
			b = append(b, `:[`...)
			b = appendJSONString(b, v[0])
			b = append(b, ',')
			b = appendJSONString(b, v[1])
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	if e.Planned {
		b = append(b, `,"planned":true`...)
	}
	return append(b, '}'), nil
}

// appendJSONTime is time.Time.MarshalJSON without its allocation.
func appendJSONTime(b []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		// MarshalJSON's own error for what RFC 3339 cannot hold.
		_, err := t.MarshalJSON()
		return nil, err
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does with its default HTML
// escaping: <, > and & as \u003c..., U+2028 and U+2029 escaped, invalid
// UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// DecodeAudit appends the entries of one stored audit record to out: a
// JSON array of consecutive entries (a chunk), or one entry (records both
// stores wrote before chunks).
func DecodeAudit(out []AuditEntry, v []byte) ([]AuditEntry, error) {
	if len(v) > 0 && v[0] == '[' {
		var es []AuditEntry
		if err := json.Unmarshal(v, &es); err != nil {
			return out, err
		}
		return append(out, es...), nil
	}
	var e AuditEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return out, err
	}
	return append(out, e), nil
}
