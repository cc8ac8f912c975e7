package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// argon2id parameters of new hashes: OWASP's recommended minimum
// (19 MiB, 2 passes, 1 lane). Checking one costs tens of milliseconds,
// which bounds what a stolen store is worth without making the login
// endpoint an easy way to burn the server's CPU.
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Limits on the parameters of hashes we are given (config local_users):
// a typo like m=6553600 must not make every login allocate 6 GiB.
const (
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonTime   = 64
	maxArgonKeyLen = 1024
)

// ErrBadHash is a stored hash ldapgate cannot read.
var ErrBadHash = errors.New("unsupported or malformed password hash")

// HashPassword returns an argon2id hash in PHC string form:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (unpadded base64).
func HashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword reports whether pw matches hash (argon2id PHC or bcrypt
// $2a$/$2b$/$2y$). The comparison is constant-time. A wrong password is
// (false, nil); only an unreadable hash is an error.
func VerifyPassword(hash, pw string) (bool, error) {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	if n := hashing.Add(1); n > hashingPeak.Load() {
		hashingPeak.Store(n) // racy max, read only by a test
	}
	defer hashing.Add(-1)
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		p, err := parseArgon2id(hash)
		if err != nil {
			return false, err
		}
		key := argon2.IDKey([]byte(pw), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		return subtle.ConstantTimeCompare(key, p.key) == 1, nil
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		default:
			return false, fmt.Errorf("%w: %w", ErrBadHash, err)
		}
	}
	return false, ErrBadHash
}

// hashSlots bounds the password checks running at once. Every refused
// login costs one (timing parity, SPEC §5), and each argon2id run holds its
// m= memory (19-64 MiB): unbounded, a flood of wrong passwords from many
// addresses would exhaust memory and stop the service (SPEC §11). Past the
// bound, checks queue; the login limits and max_conns bound the queue.
var hashSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

// hashing and hashingPeak count running checks, for the test of the bound.
var hashing, hashingPeak atomic.Int32

type argonParams struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

func parseArgon2id(h string) (argonParams, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	parts := strings.Split(h, "$")
	if len(parts) != 6 {
		return argonParams{}, fmt.Errorf("%w: argon2id: want 6 fields", ErrBadHash)
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return argonParams{}, fmt.Errorf("%w: argon2id: unsupported version %q", ErrBadHash, parts[2])
	}
	var p argonParams
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &threads); err != nil {
		return argonParams{}, fmt.Errorf("%w: argon2id parameters %q", ErrBadHash, parts[3])
	}
	if p.memory == 0 || p.memory > maxArgonMemory || p.time == 0 || p.time > maxArgonTime || threads == 0 || threads > 255 {
		return argonParams{}, fmt.Errorf("%w: argon2id parameters out of range %q", ErrBadHash, parts[3])
	}
	p.threads = uint8(threads)
	var err error
	if p.salt, err = decodeB64(parts[4]); err != nil || len(p.salt) == 0 {
		return argonParams{}, fmt.Errorf("%w: argon2id salt", ErrBadHash)
	}
	if p.key, err = decodeB64(parts[5]); err != nil || len(p.key) < 16 || len(p.key) > maxArgonKeyLen {
		return argonParams{}, fmt.Errorf("%w: argon2id key", ErrBadHash)
	}
	return p, nil
}

// decodeB64 takes PHC's unpadded base64 and, leniently, the padded form
// some tools write.
func decodeB64(s string) ([]byte, error) {
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// dummyHash is verified against when the user does not exist, so an
// unknown name costs as much time as a wrong password (no timing oracle
// for which local users exist). A constant (HashPassword of a dummy
// password) rather than hashed at init: that cost every process importing
// auth an argon2id run and 19 MiB at start. Its parameters must stay those
// of HashPassword (TestDummyHashParams).
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$PJcUxhDa/8exwxEfOirs9Q$kuwonI8BX9rvCOC9v/SiPOGAVDSHlO5vRmqijR/NkLE"

func burnDummy(pw string) { _, _ = VerifyPassword(dummyHash, pw) }
