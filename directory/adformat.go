package directory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// formatGUID renders an AD objectGUID (16 bytes) in the registry form
// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower-case. The first three groups
// are stored little-endian (Microsoft's GUID struct), the last two as bytes.
func formatGUID(b []byte) (string, bool) {
	if len(b) != 16 {
		return "", false
	}
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]),
		binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]),
		b[8:10], b[10:16]), true
}

// formatSID renders a binary objectSid as "S-1-5-21-a-b-c-RID": revision,
// sub-authority count, a 48-bit big-endian identifier authority, then
// little-endian 32-bit sub-authorities.
func formatSID(b []byte) (string, bool) {
	if len(b) < 8 {
		return "", false
	}
	n := int(b[1])
	if len(b) != 8+4*n {
		return "", false
	}
	var auth uint64
	for _, c := range b[2:8] {
		auth = auth<<8 | uint64(c)
	}
	var s strings.Builder
	s.WriteString("S-")
	s.WriteString(strconv.Itoa(int(b[0])))
	s.WriteString("-")
	s.WriteString(strconv.FormatUint(auth, 10))
	for i := range n {
		s.WriteString("-")
		s.WriteString(strconv.FormatUint(uint64(binary.LittleEndian.Uint32(b[8+4*i:])), 10))
	}
	return s.String(), true
}

// encodeSID is formatSID's inverse, for building an objectSid filter.
func encodeSID(sid string) ([]byte, error) {
	parts := strings.Split(sid, "-")
	if len(parts) < 3 || !strings.EqualFold(parts[0], "S") {
		return nil, fmt.Errorf("sid %q: not S-R-I-...", sid)
	}
	rev, err := strconv.ParseUint(parts[1], 10, 8)
	if err != nil {
		return nil, fmt.Errorf("sid %q: revision: %w", sid, err)
	}
	auth, err := strconv.ParseUint(parts[2], 10, 48)
	if err != nil {
		return nil, fmt.Errorf("sid %q: authority: %w", sid, err)
	}
	subs := parts[3:]
	if len(subs) > 15 {
		return nil, errors.New("sid: too many sub-authorities")
	}
	b := make([]byte, 8, 8+4*len(subs))
	b[0], b[1] = byte(rev), byte(len(subs))
	for i := 7; i >= 2; i-- {
		b[i] = byte(auth)
		auth >>= 8
	}
	for _, p := range subs {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("sid %q: sub-authority: %w", sid, err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return b, nil
}

// SIDRID is the relative id, the last sub-authority of a SID string as
// Group.SID holds it (513 for Domain Users): how AD's primaryGroupID names
// a group.
func SIDRID(sid string) (uint32, bool) {
	i := strings.LastIndexByte(sid, '-')
	if i < 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(sid[i+1:], 10, 32)
	return uint32(v), err == nil
}

// escapeBytes writes every byte as \xx, the filter form of a binary value
// (RFC 4515), e.g. for (objectSid=...).
func escapeBytes(b []byte) string {
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 3*len(b))
	for _, c := range b {
		out = append(out, '\\', hex[c>>4], hex[c&0xf])
	}
	return string(out)
}
