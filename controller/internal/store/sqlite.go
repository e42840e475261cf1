package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// OpenSQLite opens (creating it if needed) the SQLite database at path,
// readable by its owner only, and runs the migrations.
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	f.Close()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	// Writes go through one connection, in immediate transactions: SQLite
	// has one writer at a time, and Go queues them instead of SQLite
	// spinning on a busy lock.
	wq := url.Values{"_pragma": q["_pragma"], "_txlock": {"immediate"}}
	db, err := sql.Open("sqlite", base+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	rdb, err := sql.Open("sqlite", base+"?"+q.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	rdb.SetMaxOpenConns(8)
	rdb.SetMaxIdleConns(8)
	s := &sqlStore{dialect: "sqlite", db: db, rdb: rdb, compile: make(chan struct{}, 1), reports: newReportWriter()}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}
