-- Schema version 1 of ldapgate's PostgreSQL store (SPEC §12). Applied by
-- pgstore.Open in one transaction together with the version bump.

CREATE TABLE users (
	id             bigint PRIMARY KEY,
	username       text NOT NULL UNIQUE,
	email          text NOT NULL DEFAULT '',
	display_name   text NOT NULL DEFAULT '',
	role           text NOT NULL DEFAULT '',
	groups         text[],
	state          text NOT NULL,
	block_reason   text NOT NULL DEFAULT '',
	ldap_status    text NOT NULL DEFAULT '',
	source         text NOT NULL,
	directory_id   bigint NOT NULL DEFAULT 0,
	ldap_dn        text NOT NULL DEFAULT '',
	ldap_uuid      text NOT NULL DEFAULT '',
	password_hash  text NOT NULL DEFAULT '',
	created_at     timestamptz NOT NULL,
	updated_at     timestamptz NOT NULL,
	last_login_at  timestamptz,
	last_synced_at timestamptz
);
-- The (directory, uuid) rule of SPEC §2: a uuid names one user per directory.
CREATE UNIQUE INDEX users_dir_uuid ON users (directory_id, ldap_uuid) WHERE ldap_uuid <> '';
-- No (directory_id) index: a directory's users are read by a sync (all of
-- them, a sequential scan is what an index would cost too) and paged by
-- the console in id order; every create would pay for it.
CREATE SEQUENCE users_id_seq;

CREATE TABLE sessions (
	token_hash bytea PRIMARY KEY,
	user_id    bigint NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Config-file directories get ids by name; API directories are stored
-- whole. Both draw from one sequence, as on badger.
CREATE SEQUENCE directories_id_seq;
CREATE TABLE directory_names (
	name text PRIMARY KEY,
	id   bigint NOT NULL
);
CREATE TABLE directories (
	id     bigint PRIMARY KEY,
	record jsonb NOT NULL
);
CREATE TABLE directory_naming (
	id     bigint PRIMARY KEY,
	naming text NOT NULL
);

-- The live-change cookie of a directory (SPEC §13): where its stream resumes.
CREATE TABLE live_cookies (
	id     bigint PRIMARY KEY,
	cookie bytea NOT NULL
);

CREATE TABLE runs (
	id           bigserial PRIMARY KEY,
	directory_id bigint NOT NULL,
	record       jsonb NOT NULL
);
CREATE INDEX runs_dir ON runs (directory_id, id);
-- json, not jsonb, and no foreign key (a per-row trigger): a first sync
-- writes 100k entries, which are only ever read back whole. Pruning a run
-- deletes its entries (pgstore/runs.go).
CREATE TABLE audit (
	run_id bigint NOT NULL,
	seq    bigint NOT NULL,
	record json NOT NULL,
	PRIMARY KEY (run_id, seq)
);

-- Small named values (the config file's local users).
CREATE TABLE meta (
	key   text PRIMARY KEY,
	value jsonb NOT NULL
);
