package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ldapgate/ldapgate/account"
	"github.com/ldapgate/ldapgate/cache"
)

// Tx is the cache.Txn of one Update attempt. Not safe for concurrent use.
type Tx struct {
	ctx context.Context
	s   *Store
	tx  querier
	now time.Time
	// assigned are user ids drawn by earlier attempts of this Update: a
	// caller reusing its *account.User across a rerun comes back with one.
	assigned map[uint64]bool
	// failed is the first failed statement's error: PostgreSQL voids the
	// transaction then, whatever fn makes of the error.
	failed error
	// audit entries buffered until commit (one COPY), and the last seq
	// given out per run.
	audit    []auditChunk
	auditSeq map[uint64]uint64
	// notes name the users changed and sessions ended, for the NOTIFY
	// sent with the commit (watch.go).
	notes []string
	// deferCreates: new users are streamed to PostgreSQL by one COPY
	// (stream) that runs while fn goes on, and ends before the
	// transaction's next statement or its commit: a sync's batch of
	// creates is then one round trip, not one per user, and PostgreSQL
	// inserts while the next users are prepared. Their names and uuids
	// are checked against the stream's own only; one the store already
	// holds fails the COPY, and the attempt reruns without deferring
	// (errDeferredConflict), where PutUser answers ErrNameTaken itself.
	deferCreates bool
	stream       *userStream
	pendingKeys  map[string]bool
	ids          []int64 // user ids drawn ahead from users_id_seq
	idBatch      int
	creates      int64 // ids drawn, for the next transaction's first block
	last         struct {
		u  account.User
		ok bool
	}
}

// auditChunk is one audit row being built: consecutive entries of one
// run as a JSON array, keyed by the last entry's seq.
type auditChunk struct {
	run, last uint64
	n         int
	b         []byte
}

var _ cache.Txn = (*Tx)(nil)

// querier is what a Tx runs statements on: a transaction, or the pool for
// single-statement reads.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// fail records a statement's failure (the transaction is void from here).
func (tx *Tx) fail(err error) error {
	if tx.failed == nil {
		tx.failed = err
	}
	return err
}

// errDeferredConflict: a deferred create met a unique constraint.
var errDeferredConflict = errors.New("store: a queued new user conflicts; run again without queueing")

// userStream is a COPY of new users in progress: its source is rows,
// stopped closes when the COPY has returned, with err.
type userStream struct {
	rows    chan []any
	stopped chan struct{}
	err     error
}

// chanSource is a pgx.CopyFromSource reading rows until the channel closes.
type chanSource struct {
	rows <-chan []any
	row  []any
}

func (c *chanSource) Next() bool {
	r, ok := <-c.rows
	c.row = r
	return ok
}
func (c *chanSource) Values() ([]any, error) { return c.row, nil }
func (c *chanSource) Err() error             { return nil }

// streamUser hands a new user's row to the running COPY, starting one if
// none runs. The COPY owns the connection until flushPending.
func (tx *Tx) streamUser(row []any) error {
	if tx.failed != nil {
		return tx.failed
	}
	if tx.stream == nil {
		st := &userStream{rows: make(chan []any, 256), stopped: make(chan struct{})}
		tx.stream = st
		go func() {
			defer close(st.stopped)
			_, st.err = tx.tx.CopyFrom(tx.ctx, pgx.Identifier{"users"}, userColumnList, &chanSource{rows: st.rows})
		}()
	}
	select {
	case tx.stream.rows <- row:
		return nil
	case <-tx.stream.stopped: // the COPY failed early: its error decides
		return tx.flushPending()
	}
}

// flushPending ends the COPY of new users, if one runs, and returns its
// result; the connection is free for the next statement afterwards.
func (tx *Tx) flushPending() error {
	st := tx.stream
	if st == nil {
		return tx.failed
	}
	tx.stream, tx.pendingKeys = nil, nil
	close(st.rows)
	<-st.stopped
	if tx.failed != nil {
		return tx.failed
	}
	var pe *pgconn.PgError
	if errors.As(st.err, &pe) && pe.Code == "23505" {
		return tx.fail(errDeferredConflict)
	}
	if st.err != nil {
		return tx.fail(st.err)
	}
	return nil
}

// maxIDBlock bounds the ids one query draws: a sync batch's (SyncBatch),
// so that its COPY of new users is not cut to draw more.
const maxIDBlock = 8192

// nextUserID draws a user id, fetching them from the sequence in blocks
// that start at the size the last transaction used (a sync's batches are
// alike) and double, up to maxIDBlock: unused ones are gaps, as on badger.
func (tx *Tx) nextUserID() (int64, error) {
	if tx.failed != nil {
		return 0, tx.failed
	}
	if len(tx.ids) == 0 {
		if err := tx.flushPending(); err != nil {
			return 0, err
		}
		if tx.idBatch == 0 {
			tx.idBatch = int(tx.s.createsHint.Load())
		} else {
			tx.idBatch *= 2
		}
		tx.idBatch = min(max(tx.idBatch, 1), maxIDBlock)
		rows, err := tx.tx.Query(tx.ctx, `SELECT nextval('users_id_seq') FROM generate_series(1, $1)`, tx.idBatch)
		if err != nil {
			return 0, tx.fail(err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return 0, tx.fail(err)
			}
			tx.ids = append(tx.ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, tx.fail(err)
		}
	}
	id := tx.ids[0]
	tx.ids = tx.ids[1:]
	tx.creates++
	return id, nil
}

func (tx *Tx) exec(sql string, args ...any) (int64, error) {
	if err := tx.flushPending(); err != nil {
		return 0, err
	}
	tag, err := tx.tx.Exec(tx.ctx, sql, args...)
	if err != nil {
		return 0, tx.fail(err)
	}
	return tag.RowsAffected(), nil
}

// queryRow scans one row; pgx.ErrNoRows becomes cache.ErrNotFound and
// leaves the transaction usable.
func (tx *Tx) queryRow(sql string, args []any, dest ...any) error {
	if err := tx.flushPending(); err != nil {
		return err
	}
	err := tx.tx.QueryRow(tx.ctx, sql, args...).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return cache.ErrNotFound
	}
	if err != nil {
		return tx.fail(err)
	}
	return nil
}

const userColumns = `id, username, email, display_name, role, groups, state, block_reason, ldap_status,
	source, directory_id, ldap_dn, ldap_uuid, password_hash, created_at, updated_at, last_login_at, last_synced_at`

var userColumnList = []string{"id", "username", "email", "display_name", "role", "groups", "state", "block_reason",
	"ldap_status", "source", "directory_id", "ldap_dn", "ldap_uuid", "password_hash", "created_at", "updated_at",
	"last_login_at", "last_synced_at"}

// userRow is the scan target of userColumns.
type userRow struct {
	u                    account.User
	id, dir              int64
	state, reason, ldaps string
	source               string
	lastLogin, lastSync  *time.Time
}

func (r *userRow) dest() []any {
	return []any{&r.id, &r.u.Username, &r.u.Email, &r.u.DisplayName, &r.u.Role, &r.u.Groups, &r.state,
		&r.reason, &r.ldaps, &r.source, &r.dir, &r.u.LDAPDN, &r.u.LDAPUUID, &r.u.PasswordHash,
		&r.u.CreatedAt, &r.u.UpdatedAt, &r.lastLogin, &r.lastSync}
}

func (r *userRow) user() account.User {
	u := r.u
	u.ID, u.DirectoryID = uint64(r.id), uint64(r.dir)
	u.State, u.BlockReason, u.LDAPStatus, u.Source = account.State(r.state), account.BlockReason(r.reason),
		account.LDAPStatus(r.ldaps), account.Source(r.source)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	if r.lastLogin != nil {
		u.LastLoginAt = r.lastLogin.UTC()
	}
	if r.lastSync != nil {
		u.LastSyncedAt = r.lastSync.UTC()
	}
	if len(u.Groups) == 0 {
		u.Groups = nil
	}
	return u
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = pgTime(t)
	return &t
}

func (tx *Tx) userWhere(where string, args ...any) (account.User, error) {
	var r userRow
	if err := tx.queryRow(`SELECT `+userColumns+` FROM users WHERE `+where, args, r.dest()...); err != nil {
		return account.User{}, err
	}
	return r.user(), nil
}

// UserByID reads a user inside the transaction (sees its own writes).
func (tx *Tx) UserByID(id uint64) (account.User, error) {
	if tx.last.ok && tx.last.u.ID == id {
		return cloneUser(tx.last.u), nil
	}
	u, err := tx.userWhere(`id = $1`, int64(id))
	if err != nil {
		return account.User{}, fmt.Errorf("user %d: %w", id, err)
	}
	tx.last.u, tx.last.ok = cloneUser(u), true
	return u, nil
}

func cloneUser(u account.User) account.User {
	if u.Groups != nil {
		u.Groups = append([]string(nil), u.Groups...)
	}
	return u
}

// UserByName reads a user by (normalised) name inside the transaction.
func (tx *Tx) UserByName(name string) (account.User, error) {
	name = account.NormalizeName(name)
	u, err := tx.userWhere(`username = $1`, name)
	if err != nil {
		return account.User{}, fmt.Errorf("user %q: %w", name, err)
	}
	return u, nil
}

// UserByUUID reads a user by (directory, ldap_uuid) inside the transaction.
func (tx *Tx) UserByUUID(dirID uint64, uuid string) (account.User, error) {
	if uuid == "" {
		return account.User{}, fmt.Errorf("user uuid %d/: %w", dirID, cache.ErrNotFound)
	}
	u, err := tx.userWhere(`directory_id = $1 AND ldap_uuid = $2`, int64(dirID), uuid)
	if err != nil {
		return account.User{}, fmt.Errorf("user uuid %d/%s: %w", dirID, uuid, err)
	}
	return u, nil
}

// PutUser: see cache.Txn; cache.PrepareUser applies the rules both stores share.
func (tx *Tx) PutUser(u *account.User) error {
	old, err := cache.PrepareUser(tx, u, tx.now, func() (uint64, error) {
		id, err := tx.nextUserID()
		return uint64(id), err
	}, tx.assigned)
	if err != nil {
		return err
	}
	u.CreatedAt = pgTime(u.CreatedAt)
	u.LastLoginAt, u.LastSyncedAt = zeroOrPg(u.LastLoginAt), zeroOrPg(u.LastSyncedAt)
	tx.last.ok = false

	if old != nil && old.Username != u.Username {
		if err := tx.taken(`username = $1 AND id <> $2`, []any{u.Username, int64(u.ID)}, cache.ErrNameTaken, u); err != nil {
			return err
		}
	}
	if old != nil && u.LDAPUUID != "" && (old.DirectoryID != u.DirectoryID || old.LDAPUUID != u.LDAPUUID) {
		if err := tx.taken(`directory_id = $1 AND ldap_uuid = $2 AND id <> $3`,
			[]any{int64(u.DirectoryID), u.LDAPUUID, int64(u.ID)}, cache.ErrUUIDTaken, u); err != nil {
			return err
		}
	}
	args := []any{int64(u.ID), u.Username, u.Email, u.DisplayName, u.Role, u.Groups, string(u.State),
		string(u.BlockReason), string(u.LDAPStatus), string(u.Source), int64(u.DirectoryID), u.LDAPDN,
		u.LDAPUUID, u.PasswordHash, u.CreatedAt, u.UpdatedAt, nullTime(u.LastLoginAt), nullTime(u.LastSyncedAt)}
	if old == nil && tx.deferCreates {
		nameKey, uuidKey := "n"+u.Username, fmt.Sprintf("u%d/%s", u.DirectoryID, u.LDAPUUID)
		switch {
		case tx.pendingKeys[nameKey]:
			return fmt.Errorf("put user %q: %w", u.Username, cache.ErrNameTaken)
		case u.LDAPUUID != "" && tx.pendingKeys[uuidKey]:
			return fmt.Errorf("put user %q: uuid %s of directory %d: %w", u.Username, u.LDAPUUID, u.DirectoryID, cache.ErrUUIDTaken)
		}
		if tx.pendingKeys == nil {
			tx.pendingKeys = map[string]bool{}
		}
		tx.pendingKeys[nameKey] = true
		if u.LDAPUUID != "" {
			tx.pendingKeys[uuidKey] = true
		}
		if err := tx.streamUser(args); err != nil {
			return err
		}
	} else if old == nil {
		// One statement for the common case (a sync's creates): the unique
		// constraints are the checks, and a conflict leaves the
		// transaction usable so the answer can say which rule refused.
		n, err := tx.exec(`INSERT INTO users (`+userColumns+`)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18) ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return fmt.Errorf("put user %q: %w", u.Username, err)
		}
		if n == 0 {
			if err := tx.taken(`username = $1`, []any{u.Username}, cache.ErrNameTaken, u); err != nil {
				return err
			}
			if err := tx.taken(`directory_id = $1 AND ldap_uuid = $2 AND ldap_uuid <> ''`,
				[]any{int64(u.DirectoryID), u.LDAPUUID}, cache.ErrUUIDTaken, u); err != nil {
				return err
			}
			return fmt.Errorf("put user %q: id %d: %w", u.Username, u.ID, cache.ErrNotFound)
		}
	} else {
		_, err := tx.exec(`UPDATE users SET username=$2, email=$3, display_name=$4, role=$5, groups=$6, state=$7,
			block_reason=$8, ldap_status=$9, source=$10, directory_id=$11, ldap_dn=$12, ldap_uuid=$13,
			password_hash=$14, created_at=$15, updated_at=$16, last_login_at=$17, last_synced_at=$18
			WHERE id=$1`, args...)
		if err != nil {
			return fmt.Errorf("put user %q: %w", u.Username, err)
		}
		tx.note('u', u.ID)
		if old.PasswordHash != u.PasswordHash {
			// SPEC §5: no session outlives the password it was made with.
			if _, err := tx.DeleteUserSessions(u.ID); err != nil {
				return fmt.Errorf("put user %q: %w", u.Username, err)
			}
		}
	}
	tx.last.u, tx.last.ok = cloneUser(*u), true
	return nil
}

func zeroOrPg(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return pgTime(t)
}

// taken returns rule (wrapped) if a user matches where.
func (tx *Tx) taken(where string, args []any, rule error, u *account.User) error {
	var one int
	err := tx.queryRow(`SELECT 1 FROM users WHERE `+where, args, &one)
	switch {
	case err == nil:
		if errors.Is(rule, cache.ErrUUIDTaken) {
			return fmt.Errorf("put user %q: uuid %s of directory %d: %w", u.Username, u.LDAPUUID, u.DirectoryID, rule)
		}
		return fmt.Errorf("put user %q: %w", u.Username, rule)
	case errors.Is(err, cache.ErrNotFound):
		return nil
	default:
		return fmt.Errorf("put user %q: %w", u.Username, err)
	}
}

// DeleteUser removes a user and all its sessions. ErrNotFound.
func (tx *Tx) DeleteUser(id uint64) error {
	tx.last.ok = false
	n, err := tx.exec(`DELETE FROM users WHERE id = $1`, int64(id))
	if err != nil {
		return fmt.Errorf("delete user %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("delete user: user %d: %w", id, cache.ErrNotFound)
	}
	tx.note('u', id)
	if _, err := tx.DeleteUserSessions(id); err != nil {
		return fmt.Errorf("delete user %d: %w", id, err)
	}
	return nil
}

// DeleteUserSessions ends every session of the user in this transaction.
func (tx *Tx) DeleteUserSessions(userID uint64) (int, error) {
	n, err := tx.exec(`DELETE FROM sessions WHERE user_id = $1`, int64(userID))
	if n > 0 {
		tx.note('U', userID)
	}
	return int(n), err
}

// AddAudit appends e to run runID's audit list (seq 1, 2, ... across
// transactions); entries are written with one COPY at commit.
func (tx *Tx) AddAudit(runID uint64, e cache.AuditEntry) error {
	seq, ok := tx.auditSeq[runID]
	if !ok {
		if err := tx.flushPending(); err != nil { // the COPY holds the connection
			return err
		}
		var max int64
		err := tx.tx.QueryRow(tx.ctx, `SELECT coalesce(max(seq), 0) FROM audit WHERE run_id = $1`, int64(runID)).Scan(&max)
		if err != nil {
			return fmt.Errorf("add audit to run %d: %w", runID, tx.fail(err))
		}
		seq = uint64(max)
		if tx.auditSeq == nil {
			tx.auditSeq = map[uint64]uint64{}
		}
	}
	seq++
	tx.auditSeq[runID] = seq
	e.Seq = seq
	if e.At.IsZero() {
		e.At = tx.now
	}
	chunks, err := appendAuditEntry(tx.audit, runID, &e)
	if err != nil {
		return fmt.Errorf("add audit to run %d: %w", runID, err)
	}
	tx.audit = chunks
	return nil
}

func (tx *Tx) flushAudit() error {
	if err := tx.flushPending(); err != nil {
		return err
	}
	if len(tx.audit) == 0 {
		return nil
	}
	_, err := tx.tx.CopyFrom(tx.ctx, pgx.Identifier{"audit"}, []string{"run_id", "seq", "record"}, auditRows(tx.audit))
	if err != nil {
		return fmt.Errorf("add audit: %w", err)
	}
	tx.audit = nil
	return nil
}

// auditPerRow is how many consecutive entries of a run one audit row holds, as
// on badger (auditChunk, cache/badgerstore/tx.go): a first sync of 100k users
// then inserts 400 rows into the audit's primary key, not 100k.
const auditPerRow = 256

// appendAuditEntry adds e (its Seq set) to the last chunk when it
// continues it, else starts one. max(seq) stays a run's last entry and
// ORDER BY seq the entries' order; a row holding one object (written
// before chunks) reads the same way (RunChanges).
func appendAuditEntry(chunks []auditChunk, run uint64, e *cache.AuditEntry) ([]auditChunk, error) {
	var c *auditChunk
	if n := len(chunks); n > 0 && chunks[n-1].run == run && chunks[n-1].last+1 == e.Seq && chunks[n-1].n < auditPerRow {
		c = &chunks[n-1]
		c.b = append(c.b, ',')
	} else {
		chunks = append(chunks, auditChunk{run: run, b: make([]byte, 0, 4<<10)})
		c = &chunks[len(chunks)-1]
		c.b = append(c.b, '[')
	}
	b, err := cache.AppendAudit(c.b, e)
	if err != nil {
		return nil, err
	}
	c.b, c.last = b, e.Seq
	c.n++
	return chunks, nil
}

// auditRows is the COPY source of chunks, each closed with its ']'.
func auditRows(chunks []auditChunk) pgx.CopyFromSource {
	return pgx.CopyFromSlice(len(chunks), func(i int) ([]any, error) {
		c := chunks[i]
		return []any{int64(c.run), int64(c.last), append(c.b, ']')}, nil
	})
}

// SetNamingOverride records directory dirID's naming in this transaction.
func (tx *Tx) SetNamingOverride(dirID uint64, naming string) error {
	var err error
	if naming == "" {
		_, err = tx.exec(`DELETE FROM directory_naming WHERE id = $1`, int64(dirID))
	} else {
		_, err = tx.exec(`INSERT INTO directory_naming (id, naming) VALUES ($1, $2)
			ON CONFLICT (id) DO UPDATE SET naming = excluded.naming`, int64(dirID), naming)
	}
	return err
}

// TrustNames: never on PostgreSQL (Store.NamesToken).
func (tx *Tx) TrustNames(cache.NamesToken) (bool, error) { return false, nil }
