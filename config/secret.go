package config

import "log/slog"

// Secret holds a password or token. Every way it can be printed, logged or
// serialised shows a placeholder; only Reveal gives the value, so leaking it
// takes a deliberate call.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether a value is present.
func (s Secret) IsSet() bool { return s != "" }

func (s Secret) String() string   { return s.mask() }
func (s Secret) GoString() string { return s.mask() }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.mask()) }

// MarshalJSON never writes the value: API answers must not carry secrets.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`""`), nil }

// MarshalYAML never writes the value.
func (s Secret) MarshalYAML() (any, error) { return s.mask(), nil }

// MarshalText is used by encoders such as fmt's %v on maps; redacted too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.mask()), nil }

func (s Secret) mask() string {
	if s == "" {
		return ""
	}
	return redacted
}
