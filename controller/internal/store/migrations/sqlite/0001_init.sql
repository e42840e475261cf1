-- Alizé controller, first schema. Times are Unix microseconds; 0 is "never".
CREATE TABLE academies (
	name    TEXT PRIMARY KEY,
	title   TEXT NOT NULL,
	created INTEGER NOT NULL
);

CREATE TABLE establishments (
	uai     TEXT PRIMARY KEY,
	academy TEXT NOT NULL REFERENCES academies(name),
	name    TEXT NOT NULL,
	type    TEXT NOT NULL,
	zone    TEXT NOT NULL,
	created INTEGER NOT NULL
);
CREATE INDEX establishments_academy ON establishments(academy);

CREATE TABLE servers (
	id             TEXT PRIMARY KEY,
	uai            TEXT NOT NULL REFERENCES establishments(uai),
	role           TEXT NOT NULL,
	facts          TEXT NOT NULL,
	age_recipient  TEXT NOT NULL,
	public_key     BLOB NOT NULL,
	poll_interval  INTEGER NOT NULL,
	enrolled       INTEGER NOT NULL,
	revoked        INTEGER NOT NULL DEFAULT 0,
	last_seen      INTEGER NOT NULL DEFAULT 0,
	last_proof     INTEGER NOT NULL DEFAULT 0,
	compile_error  TEXT NOT NULL DEFAULT '',
	report_id      TEXT NOT NULL DEFAULT '',
	report_time    INTEGER NOT NULL DEFAULT 0,
	report_serial  INTEGER NOT NULL DEFAULT 0,
	report_outcome TEXT NOT NULL DEFAULT '',
	report_refusal TEXT NOT NULL DEFAULT '',
	applied_serial INTEGER NOT NULL DEFAULT 0,
	applied_time   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX servers_uai ON servers(uai);

CREATE TABLE server_groups (
	name        TEXT PRIMARY KEY,
	academy     TEXT NOT NULL,
	description TEXT NOT NULL,
	priority    INTEGER NOT NULL,
	rule        TEXT NOT NULL,
	members     TEXT NOT NULL
);

CREATE TABLE variables (
	level_kind TEXT NOT NULL,
	level_id   TEXT NOT NULL,
	name       TEXT NOT NULL,
	value      TEXT NOT NULL,
	sealed     BLOB,
	generation INTEGER NOT NULL,
	updated    INTEGER NOT NULL,
	updated_by TEXT NOT NULL,
	PRIMARY KEY (level_kind, level_id, name)
);

CREATE TABLE modules (
	name         TEXT NOT NULL,
	version      TEXT NOT NULL,
	kind         TEXT NOT NULL,
	counter      INTEGER NOT NULL,
	digest       TEXT NOT NULL,
	agent        TEXT NOT NULL,
	definition   BLOB NOT NULL,
	release      BLOB NOT NULL,
	published    INTEGER NOT NULL,
	published_by TEXT NOT NULL,
	PRIMARY KEY (name, version),
	UNIQUE (name, counter)
);

CREATE TABLE assignments (
	level_kind TEXT NOT NULL,
	level_id   TEXT NOT NULL,
	module     TEXT NOT NULL,
	version    TEXT NOT NULL,
	updated    INTEGER NOT NULL,
	updated_by TEXT NOT NULL,
	PRIMARY KEY (level_kind, level_id, module)
);

CREATE TABLE blobs (
	digest  TEXT PRIMARY KEY,
	size    INTEGER NOT NULL,
	data    BLOB NOT NULL,
	created INTEGER NOT NULL
);

CREATE TABLE roots (
	version  INTEGER PRIMARY KEY,
	envelope BLOB NOT NULL,
	expires  INTEGER NOT NULL,
	added    INTEGER NOT NULL
);

CREATE TABLE manifests (
	server_id TEXT PRIMARY KEY REFERENCES servers(id),
	serial    INTEGER NOT NULL,
	digest    TEXT NOT NULL,
	envelope  BLOB NOT NULL,
	issued    INTEGER NOT NULL,
	expires   INTEGER NOT NULL,
	inputs    TEXT NOT NULL,
	modules   TEXT NOT NULL,
	blobs     TEXT NOT NULL,
	secrets   TEXT NOT NULL
);

CREATE TABLE tokens (
	id          TEXT PRIMARY KEY,
	secret_hash BLOB NOT NULL,
	uai         TEXT NOT NULL REFERENCES establishments(uai),
	server_id   TEXT NOT NULL,
	role        TEXT NOT NULL,
	expires     INTEGER NOT NULL,
	created     INTEGER NOT NULL,
	created_by  TEXT NOT NULL,
	used        INTEGER NOT NULL DEFAULT 0,
	used_by     TEXT NOT NULL DEFAULT ''
);

CREATE TABLE certificates (
	serial     TEXT PRIMARY KEY,
	server_id  TEXT NOT NULL REFERENCES servers(id),
	not_before INTEGER NOT NULL,
	not_after  INTEGER NOT NULL,
	revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX certificates_server ON certificates(server_id);

CREATE TABLE reports (
	server_id TEXT NOT NULL REFERENCES servers(id),
	id        TEXT NOT NULL,
	serial    INTEGER NOT NULL,
	outcome   TEXT NOT NULL,
	refusal   TEXT NOT NULL,
	started   INTEGER NOT NULL,
	finished  INTEGER NOT NULL,
	received  INTEGER NOT NULL,
	body      TEXT NOT NULL,
	PRIMARY KEY (server_id, id)
);
CREATE INDEX reports_received ON reports(server_id, received);

CREATE TABLE operators (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	role        TEXT NOT NULL,
	scope       TEXT NOT NULL,
	secret_hash BLOB NOT NULL,
	created     INTEGER NOT NULL,
	created_by  TEXT NOT NULL,
	revoked     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE audit (
	seq    INTEGER PRIMARY KEY AUTOINCREMENT,
	at     INTEGER NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	digest_before TEXT NOT NULL,
	digest_after  TEXT NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit(at);
-- The audit log is append-only, whoever writes to the database.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
