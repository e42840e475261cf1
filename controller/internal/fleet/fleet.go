// Package fleet derives each server's state from its manifest and its
// reports — compliant, corrected, failing, pending, refused, not
// reporting (judged against the server's own schedule) — and the fleet
// indicators operators read: per academy, establishment type and module
// version, the compliance, the failing servers, the version spread and
// the median time from push to applied. It is pure: no store, no clock
// but the time it is given.
//
// Who may import it: controller packages only.
package fleet

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/store"
)

// Silence allowed beyond a server's schedule before it is "not
// reporting": it misses three polls, and some slack.
const (
	missedPolls = 3
	slack       = 10 * time.Minute
	minInterval = time.Minute
)

// State derives a server's state, and a reason for people when it is not
// compliant. mf is its current manifest, nil when it has none.
func State(sv store.Server, mf *store.Manifest, now time.Time) (state, reason string) {
	if !sv.Revoked.IsZero() {
		return api.StateRevoked, "revoked on " + sv.Revoked.Format(time.DateOnly)
	}
	interval := max(time.Duration(sv.PollInterval)*time.Second, minInterval)
	last := latest(sv.Enrolled, sv.ReportTime, sv.LastSeen)
	if silent := now.Sub(last); silent > missedPolls*interval+slack {
		return api.StateNotReporting, fmt.Sprintf("no contact for %s; it polls every %s", silent.Round(time.Minute), interval)
	}
	if sv.CompileError != "" {
		return api.StateFailing, "its manifest cannot be built: " + sv.CompileError
	}
	if mf == nil {
		return api.StatePending, "no manifest yet"
	}
	if sv.ReportID == "" || sv.ReportSerial < mf.Serial {
		return api.StatePending, fmt.Sprintf("has not reported on manifest %d yet", mf.Serial)
	}
	switch api.Outcome(sv.ReportOutcome) {
	case api.OutcomeCompliant:
		return api.StateCompliant, ""
	case api.OutcomeCorrected:
		return api.StateCorrected, ""
	case api.OutcomeRefused:
		return api.StateRefused, fmt.Sprintf("refused manifest %d: %s", sv.ReportSerial, sv.ReportRefusal)
	case api.OutcomeReverted:
		return api.StateFailing, "applied, then reverted"
	case api.OutcomeDrift:
		return api.StateFailing, "drift seen and left alone"
	default:
		return api.StateFailing, "a change failed"
	}
}

func latest(ts ...time.Time) time.Time {
	var l time.Time
	for _, t := range ts {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// Row is one server with what its state is derived from.
type Row struct {
	Server        store.Server
	Establishment store.Establishment
	Manifest      *store.Manifest
}

// Indicators sums rows up, per fleet, academy, establishment type and
// module version. Revoked servers are left out.
func Indicators(rows []Row, now time.Time) api.Indicators {
	type acc struct {
		row   api.IndicatorRow
		times []time.Duration
	}
	groups := map[[2]string]*acc{}
	get := func(by, key string) *acc {
		k := [2]string{by, key}
		if groups[k] == nil {
			groups[k] = &acc{row: api.IndicatorRow{By: by, Key: key}}
		}
		return groups[k]
	}
	get("fleet", "all")
	for _, r := range rows {
		state, _ := State(r.Server, r.Manifest, now)
		if state == api.StateRevoked {
			continue
		}
		keys := [][2]string{{"fleet", "all"}, {"academy", r.Establishment.Academy}, {"type", r.Establishment.Type}}
		var took time.Duration
		applied := false
		if r.Manifest != nil {
			for _, m := range r.Manifest.Modules {
				keys = append(keys, [2]string{"module", m.Name + "@" + m.Version})
			}
			if r.Server.AppliedSerial == r.Manifest.Serial && !r.Server.AppliedTime.IsZero() {
				took, applied = max(r.Server.AppliedTime.Sub(r.Manifest.Issued), 0), true
			}
		}
		for _, k := range keys {
			a := get(k[0], k[1])
			a.row.Servers++
			switch state {
			case api.StateCompliant:
				a.row.Compliant++
			case api.StateCorrected:
				a.row.Corrected++
			case api.StateFailing:
				a.row.Failing++
			case api.StatePending:
				a.row.Pending++
			case api.StateRefused:
				a.row.Refused++
			case api.StateNotReporting:
				a.row.NotReporting++
			}
			if applied {
				a.times = append(a.times, took)
			}
		}
	}
	order := map[string]int{"fleet": 0, "academy": 1, "type": 2, "module": 3}
	out := api.Indicators{Generated: now}
	for _, a := range groups {
		if a.row.Servers > 0 {
			a.row.CompliancePercent = float64(a.row.Compliant+a.row.Corrected) * 100 / float64(a.row.Servers)
		}
		if n := len(a.times); n > 0 {
			slices.Sort(a.times)
			med := a.times[n/2]
			if n%2 == 0 {
				med = (a.times[n/2-1] + a.times[n/2]) / 2
			}
			a.row.MedianPushToAppliedSeconds = med.Seconds()
		}
		out.Rows = append(out.Rows, a.row)
	}
	slices.SortFunc(out.Rows, func(a, b api.IndicatorRow) int {
		if order[a.By] != order[b.By] {
			return order[a.By] - order[b.By]
		}
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	return out
}

// CSV writes indicators as CSV, one row per line, with a header.
func CSV(ind api.Indicators) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"by", "key", "servers", "compliant", "corrected", "failing", "pending", "refused", "not_reporting", "compliance_percent", "median_push_to_applied_seconds"})
	for _, r := range ind.Rows {
		w.Write([]string{r.By, r.Key, strconv.Itoa(r.Servers), strconv.Itoa(r.Compliant), strconv.Itoa(r.Corrected), strconv.Itoa(r.Failing),
			strconv.Itoa(r.Pending), strconv.Itoa(r.Refused), strconv.Itoa(r.NotReporting),
			strconv.FormatFloat(r.CompliancePercent, 'f', 1, 64), strconv.FormatFloat(r.MedianPushToAppliedSeconds, 'f', 1, 64)})
	}
	w.Flush()
	return b.Bytes()
}
