package directory

import (
	"encoding/hex"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFormatGUID(t *testing.T) {
	for _, tc := range []struct {
		name, hex, want string
		ok              bool
	}{
		// Vector cross-checked with Python's uuid.UUID(bytes_le=...).
		{"mixed-endian", "5d7f2d6a1fb7d84a9c5ba1e5d6a9e9f5", "6a2d7f5d-b71f-4ad8-9c5b-a1e5d6a9e9f5", true},
		{"zero", "00000000000000000000000000000000", "00000000-0000-0000-0000-000000000000", true},
		{"all-ff lower-case", "ffffffffffffffffffffffffffffffff", "ffffffff-ffff-ffff-ffff-ffffffffffff", true},
		{"short", "5d7f2d6a", "", false},
		{"empty", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := formatGUID(mustHex(t, tc.hex))
			if got != tc.want || ok != tc.ok {
				t.Fatalf("formatGUID(%s) = %q, %v; want %q, %v", tc.hex, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestFormatSID(t *testing.T) {
	for _, tc := range []struct {
		name, hex, want string
		ok              bool
	}{
		{"domain user", "010500000000000515000000c7f7fed77c7755c8945ace01f5030000",
			"S-1-5-21-3623811015-3361044348-30300820-1013", true},
		{"builtin users S-1-5-32-545", "01020000000000052000000021020000", "S-1-5-32-545", true},
		{"everyone S-1-1-0", "010100000000000100000000", "S-1-1-0", true},
		{"count says more than present", "010500000000000515000000", "", false},
		{"too short", "0105", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := formatSID(mustHex(t, tc.hex))
			if got != tc.want || ok != tc.ok {
				t.Fatalf("formatSID = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
			if !ok {
				return
			}
			back, err := encodeSID(got)
			if err != nil || hex.EncodeToString(back) != tc.hex {
				t.Fatalf("encodeSID(%q) = %x, %v; want %s", got, back, err, tc.hex)
			}
		})
	}
}

func TestEncodeSIDRejects(t *testing.T) {
	for _, s := range []string{"", "S", "X-1-5", "S-1-x-21", "S-1-5-21-99999999999", "S-300-5"} {
		if b, err := encodeSID(s); err == nil {
			t.Errorf("encodeSID(%q) = %x, want error", s, b)
		}
	}
}

func TestSIDRID(t *testing.T) {
	for _, tc := range []struct {
		sid  string
		want uint32
		ok   bool
	}{
		{"S-1-5-21-1-2-3-513", 513, true},
		{"S-1-5-32-545", 545, true},
		{"nonsense", 0, false},
		{"S-1-5-x", 0, false},
	} {
		got, ok := SIDRID(tc.sid)
		if got != tc.want || ok != tc.ok {
			t.Errorf("SIDRID(%q) = %d, %v; want %d, %v", tc.sid, got, ok, tc.want, tc.ok)
		}
	}
}

func TestEscapeBytes(t *testing.T) {
	if got, want := escapeBytes([]byte{0x01, 0x05, 0x00, 0xff, '*'}), `\01\05\00\ff\2a`; got != want {
		t.Fatalf("escapeBytes = %q, want %q", got, want)
	}
}
