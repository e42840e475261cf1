package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reports arrive together: a fleet-wide change makes 17,000 agents report
// within seconds. One writer goroutine takes every report waiting and
// writes them in one transaction, a few statements for the lot, instead
// of a transaction of four statements each; a report that arrives alone is
// written at once, as before.

// maxReportBatch bounds the reports written in one transaction (9
// parameters each in the INSERT).
const maxReportBatch = 256

type reportReq struct {
	r    Report
	keep int
	dup  bool
	err  error
	done chan struct{}
}

// reportWriter is the store's report writer, started at the first report.
type reportWriter struct {
	start sync.Once
	halt  sync.Once
	queue chan *reportReq
	quit  chan struct{}
	ended chan struct{}
}

func (s *sqlStore) AddReport(ctx context.Context, r Report, keep int) (bool, error) {
	w := &s.reports
	w.start.Do(func() { go s.writeReports() })
	req := &reportReq{r: r, keep: max(keep, 1), done: make(chan struct{})}
	select {
	case w.queue <- req:
	case <-w.quit:
		return false, errors.New("store: closed")
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case <-req.done:
		return req.dup, req.err
	case <-ctx.Done():
		// It will be written all the same: sent again, it is a duplicate.
		return false, ctx.Err()
	}
}

func newReportWriter() reportWriter {
	return reportWriter{queue: make(chan *reportReq), quit: make(chan struct{}), ended: make(chan struct{})}
}

// stop ends the writer, after the batch it is writing.
func (w *reportWriter) stop() {
	w.halt.Do(func() { close(w.quit) })
	started := true
	w.start.Do(func() { started = false })
	if started {
		<-w.ended
	}
}

func (s *sqlStore) writeReports() {
	w := &s.reports
	defer close(w.ended)
	var batch []*reportReq
	for {
		select {
		case req := <-w.queue:
			batch = append(batch[:0], req)
		case <-w.quit:
			return
		}
	more:
		for len(batch) < maxReportBatch {
			select {
			case req := <-w.queue:
				batch = append(batch, req)
			default:
				break more
			}
		}
		s.writeBatch(batch)
		for _, req := range batch {
			close(req.done)
		}
	}
}

// writeBatch writes reports in one transaction. Should it fail, each is
// written alone, so that each gets its own answer.
func (s *sqlStore) writeBatch(batch []*reportReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dups []bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		dups, err = addReports(ctx, tx, batch)
		return err
	})
	if err == nil {
		for i, req := range batch {
			req.dup = dups[i]
		}
		return
	}
	if len(batch) == 1 {
		batch[0].err = err
		return
	}
	for _, req := range batch {
		s.writeBatch([]*reportReq{req})
	}
}

// addReports inserts the reports (those already stored are duplicates),
// updates their servers' last report, applied serial and facts, and
// prunes each server's reports to the newest keep.
func addReports(ctx context.Context, tx *sql.Tx, batch []*reportReq) ([]bool, error) {
	var q strings.Builder
	q.WriteString(`INSERT INTO reports (server_id, id, serial, outcome, refusal, started, finished, received, body) VALUES `)
	args := make([]any, 0, 9*len(batch))
	for i, req := range batch {
		r := req.r
		body := string(r.Body)
		if body == "" {
			body = "null"
		}
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(")
		for j := range 9 {
			if j > 0 {
				q.WriteString(", ")
			}
			q.WriteString("$" + strconv.Itoa(len(args)+j+1))
		}
		q.WriteString(")")
		args = append(args, r.ServerID, r.ID, int64(r.Serial), r.Outcome, r.Refusal, us(r.Started), us(r.Finished), us(r.Received), body)
	}
	q.WriteString(` ON CONFLICT (server_id, id) DO NOTHING RETURNING server_id, id`)
	type key struct{ server, id string }
	inserted, err := query(ctx, tx, "reports", func(r *sql.Rows) (key, error) {
		var k key
		return k, r.Scan(&k.server, &k.id)
	}, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("store: %d reports: %w", len(batch), err)
	}
	fresh := map[key]bool{}
	for _, k := range inserted {
		fresh[k] = true
	}
	dups := make([]bool, len(batch))
	updated := map[string]bool{}
	keeps := map[int][]string{}
	for i, req := range batch {
		r := req.r
		k := key{r.ServerID, r.ID}
		if !fresh[k] {
			dups[i] = true // stored before, or twice in this batch
			continue
		}
		delete(fresh, k)
		applied := 0
		if r.Applied {
			applied = 1
		}
		// The last report (and the facts it brings) only when it is the
		// newest; the applied serial only upwards.
		if _, err := exec(ctx, tx, "last report of "+r.ServerID, `UPDATE servers SET
			report_id = CASE WHEN report_time <= $3 THEN $2 ELSE report_id END,
			report_serial = CASE WHEN report_time <= $3 THEN $4 ELSE report_serial END,
			report_outcome = CASE WHEN report_time <= $3 THEN $5 ELSE report_outcome END,
			report_refusal = CASE WHEN report_time <= $3 THEN $6 ELSE report_refusal END,
			facts = CASE WHEN report_time <= $3 AND $7 <> '{}' THEN $7 ELSE facts END,
			applied_time = CASE WHEN $8 = 1 AND applied_serial < $4 THEN $3 ELSE applied_time END,
			applied_serial = CASE WHEN $8 = 1 AND applied_serial < $4 THEN $4 ELSE applied_serial END,
			report_time = CASE WHEN report_time <= $3 THEN $3 ELSE report_time END
			WHERE id = $1`, r.ServerID, r.ID, us(r.Finished), int64(r.Serial), r.Outcome, r.Refusal, jsonText(r.Facts), applied); err != nil {
			return nil, err
		}
		if !updated[r.ServerID] {
			updated[r.ServerID] = true
			keeps[req.keep] = append(keeps[req.keep], r.ServerID)
		}
	}
	for keep, ids := range keeps {
		var in strings.Builder
		args := []any{keep}
		for i, id := range ids {
			if i > 0 {
				in.WriteString(", ")
			}
			args = append(args, id)
			in.WriteString("$" + strconv.Itoa(len(args)))
		}
		// A report stays while fewer than keep of its server's are newer.
		if _, err := exec(ctx, tx, "prune reports", `DELETE FROM reports WHERE server_id IN (`+in.String()+`)
			AND (SELECT COUNT(*) FROM reports n WHERE n.server_id = reports.server_id
				AND (n.finished > reports.finished OR (n.finished = reports.finished AND n.id > reports.id))) >= $1`, args...); err != nil {
			return nil, err
		}
	}
	return dups, nil
}
