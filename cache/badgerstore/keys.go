package badgerstore

import "encoding/binary"

// Key layout. Every record kind has its own prefix; numbers are 8-byte
// big-endian so that badger's byte order is numeric order (listings by id,
// runs newest-first by reverse iteration).
//
//	u/<id>                 user record
//	un/<name>              normalised username → id
//	uu/<dir><uuid>         (directory id, ldap_uuid) → id
//	ul/<dir><id>           listing index: value is state\0role\0source, so
//	                       filters and counts never decode a user
//	s/<sha256>             session (badger TTL = its expiry)
//	su/<user><sha256>      user → sessions (same TTL)
//	d/<id>                 API-created directory
//	dn/<lower name>        config-file directory name → id
//	do/<id>                naming override of a migrated config directory
//	r/<id>                 sync run
//	rd/<dir><id>           runs of a directory
//	ra/<run><seq>          audit entries of a run: a JSON array of
//	                       consecutive entries from seq on (stores written
//	                       before chunks: one JSON object per seq)
//	rs/<run>               last audit seq of a run
//	seq/...                badger Sequences (user, dir and run ids)
//	nv                     names version (names.go)
//	lc                     the config file's local user names (localusers.go)
//	lv/<dir>               live-change cookie of a directory (live.go)
//	meta/layout            layout version, decimal (layout.go)
const (
	pUser        = "u/"
	pUserName    = "un/"
	pUserUUID    = "uu/"
	pUserList    = "ul/"
	pSession     = "s/"
	pUserSession = "su/"
	pDir         = "d/"
	pDirName     = "dn/"
	pDirNaming   = "do/"
	pRun         = "r/"
	pRunDir      = "rd/"
	pAudit       = "ra/"
	pAuditSeq    = "rs/"

	keySeqUser = "seq/user"
	keySeqDir  = "seq/dir"
	keySeqRun  = "seq/run"
)

func key(prefix string, parts ...uint64) []byte {
	k := make([]byte, len(prefix), len(prefix)+8*len(parts))
	copy(k, prefix)
	for _, p := range parts {
		k = binary.BigEndian.AppendUint64(k, p)
	}
	return k
}

func keyStr(prefix string, s string) []byte {
	return append([]byte(prefix), s...)
}

func userKey(id uint64) []byte { return key(pUser, id) }

func userNameKey(name string) []byte { return keyStr(pUserName, name) }

func userUUIDKey(dir uint64, uuid string) []byte {
	return append(key(pUserUUID, dir), uuid...)
}

func userListKey(dir, id uint64) []byte { return key(pUserList, dir, id) }

func sessionKey(h [32]byte) []byte { return append([]byte(pSession), h[:]...) }

func userSessionKey(user uint64, h [32]byte) []byte {
	return append(key(pUserSession, user), h[:]...)
}

// suffixID reads the trailing 8-byte id of a key.
func suffixID(k []byte) uint64 {
	if len(k) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(k)-8:])
}

func idBytes(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

func bytesID(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
