package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations
var migrationFiles embed.FS

// sqlStore is the Store of both dialects: the SQL is the same but for
// the migrations, the compile lock and the notifications.
type sqlStore struct {
	dialect string
	db      *sql.DB         // writes (SQLite: one connection, immediate transactions)
	rdb     *sql.DB         // reads (SQLite: a pool of its own; PostgreSQL: db)
	compile chan struct{}   // the in-process half of the compile lock
	pgcfg   *pgx.ConnConfig // PostgreSQL: for the LISTEN connection
	origin  string          // PostgreSQL: this replica, in the events it sends
	reports reportWriter
}

func (s *sqlStore) Dialect() string { return s.dialect }

func (s *sqlStore) Ping(ctx context.Context) error { return s.rdb.PingContext(ctx) }

func (s *sqlStore) Close() error {
	s.reports.stop()
	err := s.db.Close()
	if s.rdb != s.db {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// us and fromUS convert times to and from the stored Unix microseconds;
// the zero time is 0.
func us(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: marshal %T: %v", v, err)) // only our own types reach here
	}
	return string(b)
}

func unjson(s string, v any) error {
	if s == "" || s == "null" {
		return nil
	}
	return json.Unmarshal([]byte(s), v)
}

// isUnique reports a unique or primary key violation, in either dialect.
func isUnique(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		// SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE
		return lite.Code() == 1555 || lite.Code() == 2067
	}
	return false
}

// tx runs fn in a write transaction.
func (s *sqlStore) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// migrate applies the embedded migrations not applied yet, each in its
// own transaction, in order.
func (s *sqlStore) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("store: migrations table: %w", err)
	}
	dir := path.Join("migrations", s.dialect)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return fmt.Errorf("store: migrations: %w", err)
	}
	applied, err := s.Migrations(ctx)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(name, ".sql") {
			return fmt.Errorf("store: migration %s: name must be NNNN_what.sql", name)
		}
		if slices.Contains(applied, v) {
			continue
		}
		body, err := migrationFiles.ReadFile(path.Join(dir, name))
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
		err = s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)`, v, us(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
	}
	return nil
}

func (s *sqlStore) Migrations(ctx context.Context) ([]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("store: migrations: %w", err)
		}
		vs = append(vs, v)
	}
	return vs, rows.Err()
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// query runs a read and scans each row with scan.
func query[T any](ctx context.Context, db querier, what string, scan func(*sql.Rows) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

func one[T any](ctx context.Context, db querier, what string, scan func(*sql.Rows) (T, error), q string, args ...any) (T, error) {
	vs, err := query(ctx, db, what, scan, q, args...)
	if err != nil {
		var zero T
		return zero, err
	}
	if len(vs) == 0 {
		var zero T
		return zero, fmt.Errorf("store: %s: %w", what, ErrNotFound)
	}
	return vs[0], nil
}

// --- inventory ---

func scanAcademy(r *sql.Rows) (Academy, error) {
	var a Academy
	var created int64
	err := r.Scan(&a.Name, &a.Title, &created)
	a.Created = fromUS(created)
	return a, err
}

func (s *sqlStore) Academies(ctx context.Context) ([]Academy, error) {
	return query(ctx, s.rdb, "academies", scanAcademy, `SELECT name, title, created FROM academies ORDER BY name`)
}

const establishmentCols = `uai, academy, name, type, zone, created`

func scanEstablishment(r *sql.Rows) (Establishment, error) {
	var e Establishment
	var created int64
	err := r.Scan(&e.UAI, &e.Academy, &e.Name, &e.Type, &e.Zone, &created)
	e.Created = fromUS(created)
	return e, err
}

func (s *sqlStore) Establishments(ctx context.Context) ([]Establishment, error) {
	return query(ctx, s.rdb, "establishments", scanEstablishment, `SELECT `+establishmentCols+` FROM establishments ORDER BY uai`)
}

func (s *sqlStore) Establishment(ctx context.Context, uai string) (Establishment, error) {
	return one(ctx, s.rdb, "establishment "+uai, scanEstablishment, `SELECT `+establishmentCols+` FROM establishments WHERE uai = $1`, uai)
}

func scanGroup(r *sql.Rows) (Group, error) {
	var g Group
	var rule, members string
	if err := r.Scan(&g.Name, &g.Academy, &g.Description, &g.Priority, &rule, &members); err != nil {
		return g, err
	}
	if rule != "" {
		g.Rule = new(GroupRule)
		if err := unjson(rule, g.Rule); err != nil {
			return g, err
		}
	}
	return g, unjson(members, &g.Members)
}

func (s *sqlStore) Groups(ctx context.Context) ([]Group, error) {
	return query(ctx, s.rdb, "groups", scanGroup, `SELECT name, academy, description, priority, rule, members FROM server_groups ORDER BY name`)
}

const serverCols = `id, uai, role, facts, age_recipient, public_key, poll_interval, enrolled, revoked, last_seen, last_proof, compile_error,
	report_id, report_time, report_serial, report_outcome, report_refusal, applied_serial, applied_time`

func scanServer(r *sql.Rows) (Server, error) {
	var s Server
	var facts string
	var enrolled, revoked, seen, proof, rtime, atime, rserial, aserial int64
	err := r.Scan(&s.ID, &s.UAI, &s.Role, &facts, &s.AgeRecipient, &s.PublicKey, &s.PollInterval, &enrolled, &revoked, &seen, &proof, &s.CompileError,
		&s.ReportID, &rtime, &rserial, &s.ReportOutcome, &s.ReportRefusal, &aserial, &atime)
	if err != nil {
		return s, err
	}
	s.Enrolled, s.Revoked, s.LastSeen, s.LastProof = fromUS(enrolled), fromUS(revoked), fromUS(seen), fromUS(proof)
	s.ReportTime, s.AppliedTime = fromUS(rtime), fromUS(atime)
	s.ReportSerial, s.AppliedSerial = uint64(rserial), uint64(aserial)
	return s, unjson(facts, &s.Facts)
}

func (s *sqlStore) Servers(ctx context.Context) ([]Server, error) {
	return query(ctx, s.rdb, "servers", scanServer, `SELECT `+serverCols+` FROM servers ORDER BY id`)
}

func (s *sqlStore) ServersOf(ctx context.Context, uai string) ([]Server, error) {
	return query(ctx, s.rdb, "servers of "+uai, scanServer, `SELECT `+serverCols+` FROM servers WHERE uai = $1 ORDER BY id`, uai)
}

func (s *sqlStore) Server(ctx context.Context, id string) (Server, error) {
	return one(ctx, s.rdb, "server "+id, scanServer, `SELECT `+serverCols+` FROM servers WHERE id = $1`, id)
}

func scanVariable(r *sql.Rows) (Variable, error) {
	var v Variable
	var value string
	var gen, updated int64
	err := r.Scan(&v.Level.Kind, &v.Level.ID, &v.Name, &value, &v.Sealed, &gen, &updated, &v.UpdatedBy)
	v.Value = json.RawMessage(value)
	v.Generation, v.Updated = uint64(gen), fromUS(updated)
	return v, err
}

func (s *sqlStore) Variables(ctx context.Context) ([]Variable, error) {
	return query(ctx, s.rdb, "variables", scanVariable,
		`SELECT level_kind, level_id, name, value, sealed, generation, updated, updated_by FROM variables ORDER BY level_kind, level_id, name`)
}

func scanAssignment(r *sql.Rows) (Assignment, error) {
	var a Assignment
	var updated int64
	err := r.Scan(&a.Level.Kind, &a.Level.ID, &a.Module, &a.Version, &updated, &a.UpdatedBy)
	a.Updated = fromUS(updated)
	return a, err
}

func (s *sqlStore) Assignments(ctx context.Context) ([]Assignment, error) {
	return query(ctx, s.rdb, "assignments", scanAssignment,
		`SELECT level_kind, level_id, module, version, updated, updated_by FROM assignments ORDER BY level_kind, level_id, module`)
}

func scanModule(full bool) func(r *sql.Rows) (Module, error) {
	return func(r *sql.Rows) (Module, error) {
		var m Module
		var counter, published int64
		dest := []any{&m.Name, &m.Version, &m.Kind, &counter, &m.Digest, &m.Agent, &published, &m.PublishedBy}
		if full {
			dest = append(dest, &m.Definition, &m.Release)
		}
		err := r.Scan(dest...)
		m.Counter, m.Published = uint64(counter), fromUS(published)
		return m, err
	}
}

const moduleCols = `name, version, kind, counter, digest, agent, published, published_by`

func (s *sqlStore) Modules(ctx context.Context) ([]Module, error) {
	return query(ctx, s.rdb, "modules", scanModule(false), `SELECT `+moduleCols+` FROM modules ORDER BY name, counter`)
}

func (s *sqlStore) Module(ctx context.Context, name, version string) (Module, error) {
	return one(ctx, s.rdb, "module "+name+" "+version, scanModule(true),
		`SELECT `+moduleCols+`, definition, release FROM modules WHERE name = $1 AND version = $2`, name, version)
}

func scanBlob(full bool) func(r *sql.Rows) (Blob, error) {
	return func(r *sql.Rows) (Blob, error) {
		var b Blob
		var created int64
		dest := []any{&b.Digest, &b.Size, &created}
		if full {
			dest = append(dest, &b.Data)
		}
		err := r.Scan(dest...)
		b.Created = fromUS(created)
		return b, err
	}
}

func (s *sqlStore) Blobs(ctx context.Context) ([]Blob, error) {
	return query(ctx, s.rdb, "blobs", scanBlob(false), `SELECT digest, size, created FROM blobs ORDER BY digest`)
}

func (s *sqlStore) Blob(ctx context.Context, digest string) (Blob, error) {
	return one(ctx, s.rdb, "blob "+digest, scanBlob(true), `SELECT digest, size, created, data FROM blobs WHERE digest = $1`, digest)
}

func scanRoot(r *sql.Rows) (Root, error) {
	var rt Root
	var expires, added int64
	err := r.Scan(&rt.Version, &rt.Envelope, &expires, &added)
	rt.Expires, rt.Added = fromUS(expires), fromUS(added)
	return rt, err
}

func (s *sqlStore) Roots(ctx context.Context) ([]Root, error) {
	return query(ctx, s.rdb, "roots", scanRoot, `SELECT version, envelope, expires, added FROM roots ORDER BY version`)
}

func scanManifest(full bool) func(r *sql.Rows) (Manifest, error) {
	return func(r *sql.Rows) (Manifest, error) {
		var m Manifest
		var serial, issued, expires int64
		var mods, blobs, secrets string
		dest := []any{&m.ServerID, &serial, &m.Digest, &issued, &expires, &m.Inputs, &mods, &blobs, &secrets}
		if full {
			dest = append(dest, &m.Envelope)
		}
		if err := r.Scan(dest...); err != nil {
			return m, err
		}
		m.Serial, m.Issued, m.Expires = uint64(serial), fromUS(issued), fromUS(expires)
		return m, errors.Join(unjson(mods, &m.Modules), unjson(blobs, &m.Blobs), unjson(secrets, &m.Secrets))
	}
}

const manifestCols = `server_id, serial, digest, issued, expires, inputs, modules, blobs, secrets`

func (s *sqlStore) Manifests(ctx context.Context) ([]Manifest, error) {
	return query(ctx, s.rdb, "manifests", scanManifest(false), `SELECT `+manifestCols+` FROM manifests ORDER BY server_id`)
}

func (s *sqlStore) Manifest(ctx context.Context, serverID string) (Manifest, error) {
	return one(ctx, s.rdb, "manifest of "+serverID, scanManifest(true), `SELECT `+manifestCols+`, envelope FROM manifests WHERE server_id = $1`, serverID)
}

// --- commit ---

func (s *sqlStore) Commit(ctx context.Context, b *Batch) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return s.commit(ctx, tx, b) })
}

// exec runs one statement of a batch, naming it in the error.
func exec(ctx context.Context, tx *sql.Tx, what, q string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		if isUnique(err) {
			return 0, fmt.Errorf("store: %s: exists already: %w", what, ErrConflict)
		}
		return 0, fmt.Errorf("store: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: %s: %w", what, err)
	}
	return n, nil
}

func (s *sqlStore) commit(ctx context.Context, tx *sql.Tx, b *Batch) error {
	for _, a := range b.Academies {
		if _, err := exec(ctx, tx, "academy "+a.Name, `INSERT INTO academies (name, title, created) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET title = excluded.title`, a.Name, a.Title, us(a.Created)); err != nil {
			return err
		}
	}
	for _, e := range b.Establishments {
		if _, err := exec(ctx, tx, "establishment "+e.UAI, `INSERT INTO establishments (`+establishmentCols+`) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (uai) DO UPDATE SET academy = excluded.academy, name = excluded.name, type = excluded.type, zone = excluded.zone`,
			e.UAI, e.Academy, e.Name, e.Type, e.Zone, us(e.Created)); err != nil {
			return err
		}
	}
	for _, g := range b.Groups {
		rule := ""
		if g.Rule != nil {
			rule = jsonText(g.Rule)
		}
		members := g.Members
		if members == nil {
			members = []string{}
		}
		if _, err := exec(ctx, tx, "group "+g.Name, `INSERT INTO server_groups (name, academy, description, priority, rule, members) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name) DO UPDATE SET academy = excluded.academy, description = excluded.description, priority = excluded.priority, rule = excluded.rule, members = excluded.members`,
			g.Name, g.Academy, g.Description, g.Priority, rule, jsonText(members)); err != nil {
			return err
		}
	}
	for _, name := range b.DeleteGroups {
		if _, err := exec(ctx, tx, "delete group "+name, `DELETE FROM server_groups WHERE name = $1`, name); err != nil {
			return err
		}
	}
	for _, v := range b.Variables {
		value := string(v.Value)
		if value == "" {
			value = "null"
		}
		if _, err := exec(ctx, tx, "variable "+v.Level.String()+"."+v.Name, `INSERT INTO variables (level_kind, level_id, name, value, sealed, generation, updated, updated_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (level_kind, level_id, name) DO UPDATE SET value = excluded.value, sealed = excluded.sealed,
				generation = excluded.generation, updated = excluded.updated, updated_by = excluded.updated_by`,
			v.Level.Kind, v.Level.ID, v.Name, value, v.Sealed, int64(v.Generation), us(v.Updated), v.UpdatedBy); err != nil {
			return err
		}
	}
	for _, k := range b.DeleteVariables {
		if _, err := exec(ctx, tx, "delete variable "+k.Level.String()+"."+k.Name, `DELETE FROM variables WHERE level_kind = $1 AND level_id = $2 AND name = $3`,
			k.Level.Kind, k.Level.ID, k.Name); err != nil {
			return err
		}
	}
	for _, m := range b.Modules {
		if _, err := exec(ctx, tx, "module "+m.Name+" "+m.Version, `INSERT INTO modules (`+moduleCols+`, definition, release) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			m.Name, m.Version, m.Kind, int64(m.Counter), m.Digest, m.Agent, us(m.Published), m.PublishedBy, m.Definition, m.Release); err != nil {
			return err
		}
	}
	for _, a := range b.Assignments {
		if _, err := exec(ctx, tx, "assignment "+a.Level.String()+" "+a.Module, `INSERT INTO assignments (level_kind, level_id, module, version, updated, updated_by)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (level_kind, level_id, module) DO UPDATE SET version = excluded.version, updated = excluded.updated, updated_by = excluded.updated_by`,
			a.Level.Kind, a.Level.ID, a.Module, a.Version, us(a.Updated), a.UpdatedBy); err != nil {
			return err
		}
	}
	for _, k := range b.DeleteAssignments {
		if _, err := exec(ctx, tx, "delete assignment "+k.Level.String()+" "+k.Module, `DELETE FROM assignments WHERE level_kind = $1 AND level_id = $2 AND module = $3`,
			k.Level.Kind, k.Level.ID, k.Module); err != nil {
			return err
		}
	}
	for _, bl := range b.Blobs {
		if _, err := exec(ctx, tx, "blob "+bl.Digest, `INSERT INTO blobs (digest, size, data, created) VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING`,
			bl.Digest, bl.Size, bl.Data, us(bl.Created)); err != nil {
			return err
		}
	}
	// Manifests are written many to a statement.
	for _, m := range b.Manifests {
		if m.Serial != m.PrevSerial+1 {
			return fmt.Errorf("store: manifest of %s: serial %d does not follow %d", m.ServerID, m.Serial, m.PrevSerial)
		}
	}
	for chunk := range slices.Chunk(b.Manifests, manifestChunk) {
		if err := writeNextManifests(ctx, tx, chunk); err != nil {
			return err
		}
	}
	for _, id := range sortedKeys(b.CompileErrors) {
		if _, err := exec(ctx, tx, "compile error of "+id, `UPDATE servers SET compile_error = $2 WHERE id = $1`, id, b.CompileErrors[id]); err != nil {
			return err
		}
	}
	for _, t := range b.Tokens {
		if _, err := exec(ctx, tx, "token "+t.ID, `INSERT INTO tokens (id, secret_hash, uai, server_id, role, expires, created, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, t.ID, t.SecretHash, t.UAI, t.ServerID, t.Role, us(t.Expires), us(t.Created), t.CreatedBy); err != nil {
			return err
		}
	}
	for _, o := range b.Operators {
		scope := o.Scope
		if scope == nil {
			scope = []string{}
		}
		if _, err := exec(ctx, tx, "operator "+o.Name, `INSERT INTO operators (id, name, role, scope, secret_hash, created, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			o.ID, o.Name, o.Role, jsonText(scope), o.SecretHash, us(o.Created), o.CreatedBy); err != nil {
			return err
		}
	}
	for _, id := range b.RevokeOperators {
		n, err := exec(ctx, tx, "revoke operator "+id, `UPDATE operators SET revoked = $2 WHERE id = $1 AND revoked = 0`, id, us(time.Now()))
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("store: revoke operator %s: %w", id, ErrNotFound)
		}
	}
	for _, r := range b.RevokeServers {
		n, err := exec(ctx, tx, "revoke server "+r.ID, `UPDATE servers SET revoked = $2 WHERE id = $1 AND revoked = 0`, r.ID, us(r.Time))
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("store: revoke server %s: %w", r.ID, ErrNotFound)
		}
		if _, err := exec(ctx, tx, "revoke certificates of "+r.ID, `UPDATE certificates SET revoked = $2 WHERE server_id = $1 AND revoked = 0`, r.ID, us(r.Time)); err != nil {
			return err
		}
	}
	for _, rt := range b.Roots {
		if _, err := exec(ctx, tx, fmt.Sprintf("root version %d", rt.Version), `INSERT INTO roots (version, envelope, expires, added) VALUES ($1, $2, $3, $4)`,
			rt.Version, rt.Envelope, us(rt.Expires), us(rt.Added)); err != nil {
			return err
		}
	}
	for _, a := range b.Audit {
		if err := insertAudit(ctx, tx, a); err != nil {
			return err
		}
	}
	if s.dialect == "postgres" {
		for _, payload := range eventPayloads(s.origin, b.Events) {
			if _, err := exec(ctx, tx, "notify", `SELECT pg_notify('`+notifyChannel+`', $1)`, payload); err != nil {
				return err
			}
		}
	}
	return nil
}

// manifestChunk is how many manifests one statement writes (10
// parameters each: PostgreSQL takes 65,535 at most, SQLite 32,766).
const manifestChunk = 500

// writeNextManifests writes manifests that each follow the stored one:
// a new row for serial 1, else the row of serial - 1. A row that is not
// (another replica wrote meanwhile) is a conflict.
func writeNextManifests(ctx context.Context, tx *sql.Tx, ms []Manifest) error {
	var q strings.Builder
	q.WriteString(`INSERT INTO manifests (server_id, serial, digest, envelope, issued, expires, inputs, modules, blobs, secrets) VALUES `)
	args := make([]any, 0, 10*len(ms))
	for i, m := range ms {
		if i > 0 {
			q.WriteString(", ")
		}
		n := len(args)
		fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10)
		args = append(args, m.ServerID, int64(m.Serial), m.Digest, m.Envelope, us(m.Issued), us(m.Expires), m.Inputs,
			jsonText(orEmpty(m.Modules)), jsonText(orEmpty(m.Blobs)), jsonText(orEmpty(m.Secrets)))
	}
	q.WriteString(` ON CONFLICT (server_id) DO UPDATE SET serial = excluded.serial, digest = excluded.digest, envelope = excluded.envelope,
		issued = excluded.issued, expires = excluded.expires, inputs = excluded.inputs, modules = excluded.modules,
		blobs = excluded.blobs, secrets = excluded.secrets
		WHERE manifests.serial = excluded.serial - 1
		RETURNING server_id`)
	written, err := query(ctx, tx, fmt.Sprintf("%d manifests", len(ms)), func(r *sql.Rows) (string, error) {
		var id string
		return id, r.Scan(&id)
	}, q.String(), args...)
	if err != nil {
		return err
	}
	if len(written) == len(ms) {
		return nil
	}
	for _, m := range ms {
		if !slices.Contains(written, m.ServerID) {
			return fmt.Errorf("store: manifest of %s: serial is no longer %d: %w", m.ServerID, m.PrevSerial, ErrConflict)
		}
	}
	return fmt.Errorf("store: %d manifests: %d written: %w", len(ms), len(written), ErrConflict)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func insertAudit(ctx context.Context, tx *sql.Tx, a AuditEntry) error {
	detail := string(a.Detail)
	if detail == "" {
		detail = "null"
	}
	_, err := exec(ctx, tx, "audit "+a.Action, `INSERT INTO audit (at, actor, action, target, digest_before, digest_after, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		us(a.Time), a.Actor, a.Action, a.Target, a.Before, a.After, detail)
	return err
}

// notifyChannel is the PostgreSQL channel replicas listen on.
const notifyChannel = "alize_events"

// maxPayload keeps NOTIFY payloads under PostgreSQL's 8000 bytes.
const maxPayload = 7000

// eventPayloads cuts events into NOTIFY payloads, splitting long id lists.
func eventPayloads(origin string, events []Event) []string {
	var out []string
	for _, ev := range events {
		ev.Origin = origin
		if len(ev.IDs) == 0 {
			out = append(out, jsonText(ev))
			continue
		}
		var chunk []string
		size := 0
		for _, id := range ev.IDs {
			if size+len(id)+3 > maxPayload && len(chunk) > 0 {
				out = append(out, jsonText(Event{Kind: ev.Kind, IDs: chunk, Origin: origin}))
				chunk, size = nil, 0
			}
			chunk = append(chunk, id)
			size += len(id) + 3
		}
		out = append(out, jsonText(Event{Kind: ev.Kind, IDs: chunk, Origin: origin}))
	}
	return out
}

// --- enrollment and identity ---

const tokenCols = `id, secret_hash, uai, server_id, role, expires, created, created_by, used, used_by`

func scanToken(r *sql.Rows) (Token, error) {
	var t Token
	var expires, created, used int64
	err := r.Scan(&t.ID, &t.SecretHash, &t.UAI, &t.ServerID, &t.Role, &expires, &created, &t.CreatedBy, &used, &t.UsedBy)
	t.Expires, t.Created, t.Used = fromUS(expires), fromUS(created), fromUS(used)
	return t, err
}

func (s *sqlStore) Token(ctx context.Context, id string) (Token, error) {
	return one(ctx, s.rdb, "token "+id, scanToken, `SELECT `+tokenCols+` FROM tokens WHERE id = $1`, id)
}

func (s *sqlStore) Tokens(ctx context.Context) ([]Token, error) {
	return query(ctx, s.rdb, "tokens", scanToken, `SELECT `+tokenCols+` FROM tokens ORDER BY created DESC, id`)
}

func (s *sqlStore) Enroll(ctx context.Context, e Enrollment) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var used, expires int64
		err := tx.QueryRowContext(ctx, `SELECT used, expires FROM tokens WHERE id = $1`, e.TokenID).Scan(&used, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: enroll: token %s: %w", e.TokenID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: enroll: %w", err)
		}
		if used != 0 {
			return fmt.Errorf("store: enroll: %w", ErrTokenUsed)
		}
		if !e.Time.Before(fromUS(expires)) {
			return fmt.Errorf("store: enroll: %w", ErrTokenExpired)
		}
		n, err := exec(ctx, tx, "use token", `UPDATE tokens SET used = $2, used_by = $3 WHERE id = $1 AND used = 0`, e.TokenID, us(e.Time), e.Server.ID)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("store: enroll: %w", ErrTokenUsed)
		}
		sv := e.Server
		if e.Replace {
			n, err := exec(ctx, tx, "re-key server "+sv.ID, `UPDATE servers SET facts = $2, age_recipient = $3, public_key = $4, enrolled = $5, revoked = 0, last_proof = 0
				WHERE id = $1 AND uai = $6`, sv.ID, jsonText(sv.Facts), sv.AgeRecipient, sv.PublicKey, us(sv.Enrolled), sv.UAI)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("store: enroll: server %s of %s: %w", sv.ID, sv.UAI, ErrNotFound)
			}
			if _, err := exec(ctx, tx, "revoke certificates of "+sv.ID, `UPDATE certificates SET revoked = $2 WHERE server_id = $1 AND revoked = 0`, sv.ID, us(e.Time)); err != nil {
				return err
			}
		} else {
			if _, err := exec(ctx, tx, "server "+sv.ID, `INSERT INTO servers (id, uai, role, facts, age_recipient, public_key, poll_interval, enrolled)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, sv.ID, sv.UAI, sv.Role, jsonText(sv.Facts), sv.AgeRecipient, sv.PublicKey, sv.PollInterval, us(sv.Enrolled)); err != nil {
				return err
			}
		}
		if err := insertCertificate(ctx, tx, e.Certificate); err != nil {
			return err
		}
		if e.Audit.Action != "" {
			return insertAudit(ctx, tx, e.Audit)
		}
		return nil
	})
}

func insertCertificate(ctx context.Context, tx *sql.Tx, c Certificate) error {
	_, err := exec(ctx, tx, "certificate "+c.Serial, `INSERT INTO certificates (serial, server_id, not_before, not_after) VALUES ($1, $2, $3, $4)`,
		c.Serial, c.ServerID, us(c.NotBefore), us(c.NotAfter))
	return err
}

func (s *sqlStore) AddCertificate(ctx context.Context, c Certificate) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return insertCertificate(ctx, tx, c) })
}

func scanCertificate(r *sql.Rows) (Certificate, error) {
	var c Certificate
	var nb, na, rv int64
	err := r.Scan(&c.Serial, &c.ServerID, &nb, &na, &rv)
	c.NotBefore, c.NotAfter, c.Revoked = fromUS(nb), fromUS(na), fromUS(rv)
	return c, err
}

func (s *sqlStore) Certificates(ctx context.Context, serverID string) ([]Certificate, error) {
	return query(ctx, s.rdb, "certificates of "+serverID, scanCertificate,
		`SELECT serial, server_id, not_before, not_after, revoked FROM certificates WHERE server_id = $1 ORDER BY not_after, serial`, serverID)
}

func (s *sqlStore) UseProof(ctx context.Context, serverID string, t time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		n, err := exec(ctx, tx, "proof of "+serverID, `UPDATE servers SET last_proof = $2 WHERE id = $1 AND last_proof < $2`, serverID, us(t))
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("store: proof of %s: not newer than the last one: %w", serverID, ErrConflict)
		}
		return nil
	})
}

func (s *sqlStore) DenyList(ctx context.Context) (DenyList, error) {
	var d DenyList
	var err error
	scanString := func(r *sql.Rows) (string, error) {
		var v string
		return v, r.Scan(&v)
	}
	if d.Serials, err = query(ctx, s.rdb, "deny-list", scanString, `SELECT serial FROM certificates WHERE revoked <> 0 ORDER BY serial`); err != nil {
		return d, err
	}
	d.Servers, err = query(ctx, s.rdb, "deny-list", scanString, `SELECT id FROM servers WHERE revoked <> 0 ORDER BY id`)
	return d, err
}

// --- reports ---

func scanReport(r *sql.Rows) (Report, error) {
	var rp Report
	var serial, started, finished, received int64
	var body string
	err := r.Scan(&rp.ServerID, &rp.ID, &serial, &rp.Outcome, &rp.Refusal, &started, &finished, &received, &body)
	rp.Serial, rp.Started, rp.Finished, rp.Received = uint64(serial), fromUS(started), fromUS(finished), fromUS(received)
	rp.Body = json.RawMessage(body)
	return rp, err
}

func (s *sqlStore) Reports(ctx context.Context, f ReportFilter) ([]Report, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	const cols = `server_id, id, serial, outcome, refusal, started, finished, received, body`
	if f.ServerID != "" {
		return query(ctx, s.rdb, "reports", scanReport, `SELECT `+cols+` FROM reports WHERE server_id = $1 ORDER BY finished DESC, id DESC LIMIT $2`, f.ServerID, limit)
	}
	return query(ctx, s.rdb, "reports", scanReport, `SELECT `+cols+` FROM reports ORDER BY finished DESC, server_id, id DESC LIMIT $1`, limit)
}

func (s *sqlStore) MarkSeen(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, id := range sortedKeys(seen) {
			if _, err := exec(ctx, tx, "seen "+id, `UPDATE servers SET last_seen = $2 WHERE id = $1 AND last_seen < $2`, id, us(seen[id])); err != nil {
				return err
			}
		}
		return nil
	})
}

// --- operators and audit ---

const operatorCols = `id, name, role, scope, secret_hash, created, created_by, revoked`

func scanOperator(r *sql.Rows) (Operator, error) {
	var o Operator
	var scope string
	var created, revoked int64
	if err := r.Scan(&o.ID, &o.Name, &o.Role, &scope, &o.SecretHash, &created, &o.CreatedBy, &revoked); err != nil {
		return o, err
	}
	o.Created, o.Revoked = fromUS(created), fromUS(revoked)
	return o, unjson(scope, &o.Scope)
}

func (s *sqlStore) Operator(ctx context.Context, id string) (Operator, error) {
	return one(ctx, s.rdb, "operator "+id, scanOperator, `SELECT `+operatorCols+` FROM operators WHERE id = $1`, id)
}

func (s *sqlStore) Operators(ctx context.Context) ([]Operator, error) {
	return query(ctx, s.rdb, "operators", scanOperator, `SELECT `+operatorCols+` FROM operators ORDER BY name`)
}

func scanAudit(r *sql.Rows) (AuditEntry, error) {
	var a AuditEntry
	var t int64
	var detail string
	err := r.Scan(&a.Seq, &t, &a.Actor, &a.Action, &a.Target, &a.Before, &a.After, &detail)
	a.Time = fromUS(t)
	if detail != "null" {
		a.Detail = json.RawMessage(detail)
	}
	return a, err
}

func (s *sqlStore) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q := `SELECT seq, at, actor, action, target, digest_before, digest_after, detail FROM audit WHERE at >= $1`
	args := []any{us(f.Since)}
	if f.Actor != "" {
		args = append(args, f.Actor)
		q += fmt.Sprintf(` AND actor = $%d`, len(args))
	}
	if f.Target != "" {
		args = append(args, f.Target, utf8.RuneCountInString(f.Target))
		q += fmt.Sprintf(` AND substr(target, 1, $%d) = $%d`, len(args), len(args)-1)
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY seq DESC LIMIT $%d`, len(args))
	return query(ctx, s.rdb, "audit", scanAudit, q, args...)
}
