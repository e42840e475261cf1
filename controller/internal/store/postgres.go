package store

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// OpenPostgres connects to PostgreSQL and runs the migrations, one
// replica at a time.
func OpenPostgres(ctx context.Context, dsn string) (Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &sqlStore{dialect: "postgres", db: db, rdb: db, pgcfg: cfg, compile: make(chan struct{}, 1), origin: newOrigin(), reports: newReportWriter()}
	unlock, err := s.advisoryLock(ctx, migrateLockKey)
	if err != nil {
		db.Close()
		return nil, err
	}
	err = s.migrate(ctx)
	unlock()
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Advisory lock keys: arbitrary, fixed, Alizé's own.
const (
	migrateLockKey = 0x616c697a65000001
	compileLockKey = 0x616c697a65000002
)

// advisoryLock takes a session-level advisory lock on a connection of its
// own, held until unlock.
func (s *sqlStore) advisoryLock(ctx context.Context, key int64) (func(), error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		conn.Close()
		return nil, fmt.Errorf("store: lock: %w", err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// Throw the connection away: its session ends, and the lock with it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}, nil
}

// Lock takes the compile lock: in-process first, so that waiting
// goroutines do not each hold a connection, then across replicas.
func (s *sqlStore) Lock(ctx context.Context) (func(), error) {
	select {
	case s.compile <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("store: lock: %w", ctx.Err())
	}
	release := func() { <-s.compile }
	if s.dialect != "postgres" {
		return release, nil
	}
	unlock, err := s.advisoryLock(ctx, compileLockKey)
	if err != nil {
		release()
		return nil, err
	}
	return func() { unlock(); release() }, nil
}

// Listen receives other replicas' events (PostgreSQL LISTEN). After a
// lost connection it reconnects and sends an EventResync: notifications
// may have been missed meanwhile.
func (s *sqlStore) Listen(ctx context.Context, ready chan<- struct{}, fn func(Event)) error {
	if s.dialect != "postgres" {
		if ready != nil {
			close(ready)
		}
		<-ctx.Done()
		return nil
	}
	first := true
	for {
		err := s.listenOnce(ctx, func() {
			if first {
				first = false
				if ready != nil {
					close(ready)
				}
				return
			}
			fn(Event{Kind: EventResync})
		}, fn)
		if ctx.Err() != nil {
			return nil
		}
		_ = err
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second + rand.N(2*time.Second)):
		}
	}
}

// newOrigin names a replica in the events it sends, so that it can tell
// them from the other replicas'.
func newOrigin() string {
	return fmt.Sprintf("%016x", rand.Uint64())
}

func (s *sqlStore) listenOnce(ctx context.Context, connected func(), fn func(Event)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pgcfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		return err
	}
	connected()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var ev Event
		if err := json.Unmarshal([]byte(n.Payload), &ev); err != nil {
			continue // not ours
		}
		if ev.Origin == s.origin {
			continue // this replica's own: it acted on it when it committed
		}
		fn(ev)
	}
}
