package badgerstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ldapgate/ldapgate/account"
)

// Users are stored in a small versioned binary form rather than JSON: a
// first sync writes 100k of them and every re-sync decodes them all, and
// the form is about a third of JSON's size, so more of a migration fits in
// one transaction. Layout (version 1): version byte, then each field of
// account.User in declaration order; strings and the groups list are
// uvarint-length-prefixed, ids uvarints, times a presence byte followed by
// varint unix seconds and uvarint nanoseconds (UTC).
//
// Version 2 (store layout 3) appends ldap_status (SPEC §13) as one more
// string after the times. Version 1 records still decode (with an empty
// ldap_status, which is what they meant); every write is version 2.
const (
	userCodecV1 = 1
	userCodecV2 = 2
)

var errShortRecord = errors.New("truncated user record")

func encodeUser(u *account.User) ([]byte, error) {
	n := 1 + 10 + 10 + 4*16
	for _, s := range [...]string{u.Username, u.Email, u.DisplayName, u.Role, string(u.State),
		string(u.BlockReason), string(u.Source), u.LDAPDN, u.LDAPUUID, u.PasswordHash, string(u.LDAPStatus)} {
		n += len(s) + 2
	}
	for _, g := range u.Groups {
		n += len(g) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, userCodecV2)
	b = binary.AppendUvarint(b, u.ID)
	b = appendString(b, u.Username)
	b = appendString(b, u.Email)
	b = appendString(b, u.DisplayName)
	b = appendString(b, u.Role)
	b = binary.AppendUvarint(b, uint64(len(u.Groups)))
	for _, g := range u.Groups {
		b = appendString(b, g)
	}
	b = appendString(b, string(u.State))
	b = appendString(b, string(u.BlockReason))
	b = appendString(b, string(u.Source))
	b = binary.AppendUvarint(b, u.DirectoryID)
	b = appendString(b, u.LDAPDN)
	b = appendString(b, u.LDAPUUID)
	b = appendString(b, u.PasswordHash)
	for _, t := range [...]time.Time{u.CreatedAt, u.UpdatedAt, u.LastLoginAt, u.LastSyncedAt} {
		b = appendTime(b, t)
	}
	b = appendString(b, string(u.LDAPStatus))
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// reader walks a record copied into one string, so that decoding allocates
// that string once and every field is a substring of it.
type reader struct {
	s   string
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	var v uint64
	for i := 0; i < len(r.s) && i < binary.MaxVarintLen64; i++ {
		c := r.s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			r.s = r.s[i+1:]
			return v | uint64(c)<<(7*i)
		}
		v |= uint64(c&0x7f) << (7 * i)
	}
	r.err = errShortRecord
	return 0
}

func (r *reader) varint() int64 {
	ux := r.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if uint64(len(r.s)) < n {
		r.err = errShortRecord
		return ""
	}
	s := r.s[:n]
	r.s = r.s[n:]
	return s
}

func (r *reader) time() time.Time {
	if r.err != nil || len(r.s) == 0 {
		r.err = errShortRecord
		return time.Time{}
	}
	present := r.s[0]
	r.s = r.s[1:]
	if present == 0 {
		return time.Time{}
	}
	sec := r.varint()
	nsec := r.uvarint()
	if r.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// decodeUser decodes a stored user. The value b belongs to badger and is
// only valid during the call, hence the one copy into a string.
func decodeUser(b []byte) (account.User, error) {
	if len(b) == 0 || (b[0] != userCodecV1 && b[0] != userCodecV2) {
		return account.User{}, fmt.Errorf("decode user: unknown record version")
	}
	r := reader{s: string(b[1:])}
	var u account.User
	u.ID = r.uvarint()
	u.Username = r.string()
	u.Email = r.string()
	u.DisplayName = r.string()
	u.Role = r.string()
	if n := r.uvarint(); n > 0 && r.err == nil {
		if n > uint64(len(r.s)) {
			return account.User{}, fmt.Errorf("decode user: %w", errShortRecord)
		}
		// Exact capacity: a caller appending to the groups of a (possibly
		// cached) user gets a new array instead of writing into ours.
		u.Groups = make([]string, n)
		for i := range u.Groups {
			u.Groups[i] = r.string()
		}
	}
	u.State = account.State(r.string())
	u.BlockReason = account.BlockReason(r.string())
	u.Source = account.Source(r.string())
	u.DirectoryID = r.uvarint()
	u.LDAPDN = r.string()
	u.LDAPUUID = r.string()
	u.PasswordHash = r.string()
	u.CreatedAt = r.time()
	u.UpdatedAt = r.time()
	u.LastLoginAt = r.time()
	u.LastSyncedAt = r.time()
	if b[0] >= userCodecV2 {
		u.LDAPStatus = account.LDAPStatus(r.string())
	}
	if r.err != nil {
		return account.User{}, fmt.Errorf("decode user %d: %w", u.ID, r.err)
	}
	return u, nil
}
