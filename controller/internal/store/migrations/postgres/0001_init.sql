-- Alizé controller, first schema. Times are Unix microseconds; 0 is "never".
CREATE TABLE academies (
	name    TEXT PRIMARY KEY,
	title   TEXT NOT NULL,
	created BIGINT NOT NULL
);

CREATE TABLE establishments (
	uai     TEXT PRIMARY KEY,
	academy TEXT NOT NULL REFERENCES academies(name),
	name    TEXT NOT NULL,
	type    TEXT NOT NULL,
	zone    TEXT NOT NULL,
	created BIGINT NOT NULL
);
CREATE INDEX establishments_academy ON establishments(academy);

CREATE TABLE servers (
	id             TEXT PRIMARY KEY,
	uai            TEXT NOT NULL REFERENCES establishments(uai),
	role           TEXT NOT NULL,
	facts          TEXT NOT NULL,
	age_recipient  TEXT NOT NULL,
	public_key     BYTEA NOT NULL,
	poll_interval  BIGINT NOT NULL,
	enrolled       BIGINT NOT NULL,
	revoked        BIGINT NOT NULL DEFAULT 0,
	last_seen      BIGINT NOT NULL DEFAULT 0,
	last_proof     BIGINT NOT NULL DEFAULT 0,
	compile_error  TEXT NOT NULL DEFAULT '',
	report_id      TEXT NOT NULL DEFAULT '',
	report_time    BIGINT NOT NULL DEFAULT 0,
	report_serial  BIGINT NOT NULL DEFAULT 0,
	report_outcome TEXT NOT NULL DEFAULT '',
	report_refusal TEXT NOT NULL DEFAULT '',
	applied_serial BIGINT NOT NULL DEFAULT 0,
	applied_time   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX servers_uai ON servers(uai);

CREATE TABLE server_groups (
	name        TEXT PRIMARY KEY,
	academy     TEXT NOT NULL,
	description TEXT NOT NULL,
	priority    BIGINT NOT NULL,
	rule        TEXT NOT NULL,
	members     TEXT NOT NULL
);

CREATE TABLE variables (
	level_kind TEXT NOT NULL,
	level_id   TEXT NOT NULL,
	name       TEXT NOT NULL,
	value      TEXT NOT NULL,
	sealed     BYTEA,
	generation BIGINT NOT NULL,
	updated    BIGINT NOT NULL,
	updated_by TEXT NOT NULL,
	PRIMARY KEY (level_kind, level_id, name)
);

CREATE TABLE modules (
	name         TEXT NOT NULL,
	version      TEXT NOT NULL,
	kind         TEXT NOT NULL,
	counter      BIGINT NOT NULL,
	digest       TEXT NOT NULL,
	agent        TEXT NOT NULL,
	definition   BYTEA NOT NULL,
	release      BYTEA NOT NULL,
	published    BIGINT NOT NULL,
	published_by TEXT NOT NULL,
	PRIMARY KEY (name, version),
	UNIQUE (name, counter)
);

CREATE TABLE assignments (
	level_kind TEXT NOT NULL,
	level_id   TEXT NOT NULL,
	module     TEXT NOT NULL,
	version    TEXT NOT NULL,
	updated    BIGINT NOT NULL,
	updated_by TEXT NOT NULL,
	PRIMARY KEY (level_kind, level_id, module)
);

CREATE TABLE blobs (
	digest  TEXT PRIMARY KEY,
	size    BIGINT NOT NULL,
	data    BYTEA NOT NULL,
	created BIGINT NOT NULL
);

CREATE TABLE roots (
	version  BIGINT PRIMARY KEY,
	envelope BYTEA NOT NULL,
	expires  BIGINT NOT NULL,
	added    BIGINT NOT NULL
);

CREATE TABLE manifests (
	server_id TEXT PRIMARY KEY REFERENCES servers(id),
	serial    BIGINT NOT NULL,
	digest    TEXT NOT NULL,
	envelope  BYTEA NOT NULL,
	issued    BIGINT NOT NULL,
	expires   BIGINT NOT NULL,
	inputs    TEXT NOT NULL,
	modules   TEXT NOT NULL,
	blobs     TEXT NOT NULL,
	secrets   TEXT NOT NULL
);

CREATE TABLE tokens (
	id          TEXT PRIMARY KEY,
	secret_hash BYTEA NOT NULL,
	uai         TEXT NOT NULL REFERENCES establishments(uai),
	server_id   TEXT NOT NULL,
	role        TEXT NOT NULL,
	expires     BIGINT NOT NULL,
	created     BIGINT NOT NULL,
	created_by  TEXT NOT NULL,
	used        BIGINT NOT NULL DEFAULT 0,
	used_by     TEXT NOT NULL DEFAULT ''
);

CREATE TABLE certificates (
	serial     TEXT PRIMARY KEY,
	server_id  TEXT NOT NULL REFERENCES servers(id),
	not_before BIGINT NOT NULL,
	not_after  BIGINT NOT NULL,
	revoked    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX certificates_server ON certificates(server_id);

CREATE TABLE reports (
	server_id TEXT NOT NULL REFERENCES servers(id),
	id        TEXT NOT NULL,
	serial    BIGINT NOT NULL,
	outcome   TEXT NOT NULL,
	refusal   TEXT NOT NULL,
	started   BIGINT NOT NULL,
	finished  BIGINT NOT NULL,
	received  BIGINT NOT NULL,
	body      TEXT NOT NULL,
	PRIMARY KEY (server_id, id)
);
CREATE INDEX reports_received ON reports(server_id, received);

CREATE TABLE operators (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	role        TEXT NOT NULL,
	scope       TEXT NOT NULL,
	secret_hash BYTEA NOT NULL,
	created     BIGINT NOT NULL,
	created_by  TEXT NOT NULL,
	revoked     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE audit (
	seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at     BIGINT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	digest_before TEXT NOT NULL,
	digest_after  TEXT NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit(at);
-- The audit log is append-only, whoever writes to the database.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit
FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
