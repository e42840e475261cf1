package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/director"
	"github.com/alize-eple/alize/controller/internal/fleet"
	"github.com/alize-eple/alize/controller/internal/keys"
	"github.com/alize-eple/alize/controller/internal/store"
	"github.com/alize-eple/alize/modules/accounts/roster"
	"github.com/alize-eple/alize/modules/manifest"
)

func (s *srv) whoami(w http.ResponseWriter, _ *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, api.Whoami{ID: c.ID, Name: c.Name, Role: c.Role, Scope: c.Scope})
	return nil
}

// levelScope returns the academy and UAI of a level, for authorization.
func (s *srv) levelScope(ctx context.Context, l store.Level) (academy, uai string, err error) {
	academy, err = s.Director.LevelAcademy(ctx, l)
	if err != nil {
		return "", "", err
	}
	switch l.Kind {
	case store.LevelEstablishment:
		uai = l.ID
	case store.LevelServer:
		sv, err := s.Store.Server(ctx, l.ID)
		if err != nil {
			return "", "", err
		}
		uai = sv.UAI
	}
	return academy, uai, nil
}

// writeLevel parses a level and checks the caller may change it.
func (s *srv) writeLevel(ctx context.Context, c *caller, text string) (store.Level, error) {
	l, err := director.ParseLevel(text)
	if err != nil {
		return l, err
	}
	academy, _, err := s.levelScope(ctx, l)
	if err != nil {
		return l, err
	}
	if !c.canWrite(academy) {
		return l, forbidden()
	}
	return l, nil
}

// readable filters a list by what the caller may read of each element.
func readable[T any](c *caller, in []T, scope func(T) (academy, uai string)) []T {
	out := make([]T, 0, len(in))
	for _, v := range in {
		if a, u := scope(v); c.canRead(a, u) {
			out = append(out, v)
		}
	}
	return out
}

// academyOfUAI maps establishments to their academies.
func (s *srv) academyOfUAI(ctx context.Context) (map[string]store.Establishment, error) {
	es, err := s.Store.Establishments(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]store.Establishment, len(es))
	for _, e := range es {
		m[e.UAI] = e
	}
	return m, nil
}

func (s *srv) apply(w http.ResponseWriter, r *http.Request, ch director.Change, c *caller, dryRun bool) error {
	plan, err := s.Director.Apply(r.Context(), ch, c.name(), dryRun)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, plan)
	return nil
}

// --- academies, establishments, groups ---

func (s *srv) listAcademies(w http.ResponseWriter, r *http.Request, c *caller) error {
	as, err := s.Store.Academies(r.Context())
	if err != nil {
		return err
	}
	out := []api.Academy{}
	for _, a := range readable(c, as, func(a store.Academy) (string, string) { return a.Name, "" }) {
		out = append(out, api.Academy(a))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *srv) putAcademy(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.Academy
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if !c.fleetAdmin() {
		return forbidden()
	}
	return s.apply(w, r, director.PutAcademy{Academy: store.Academy{Name: req.Name, Title: req.Title}}, c, false)
}

func (s *srv) listEstablishments(w http.ResponseWriter, r *http.Request, c *caller) error {
	es, err := s.Store.Establishments(r.Context())
	if err != nil {
		return err
	}
	out := []api.Establishment{}
	for _, e := range readable(c, es, func(e store.Establishment) (string, string) { return e.Academy, e.UAI }) {
		out = append(out, api.Establishment(e))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *srv) putEstablishment(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.EstablishmentRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if !c.canWrite(req.Academy) {
		return forbidden()
	}
	if prev, err := s.Store.Establishment(r.Context(), req.UAI); err == nil && !c.canWrite(prev.Academy) {
		return forbidden()
	}
	return s.apply(w, r, director.PutEstablishment{Establishment: store.Establishment(req.Establishment)}, c, req.DryRun)
}

func groupToAPI(g store.Group) api.Group {
	out := api.Group{Name: g.Name, Academy: g.Academy, Description: g.Description, Priority: g.Priority, Members: g.Members}
	if g.Rule != nil {
		r := api.GroupRule(*g.Rule)
		out.Rule = &r
	}
	return out
}

func (s *srv) listGroups(w http.ResponseWriter, r *http.Request, c *caller) error {
	gs, err := s.Store.Groups(r.Context())
	if err != nil {
		return err
	}
	out := []api.Group{}
	for _, g := range readable(c, gs, func(g store.Group) (string, string) { return g.Academy, "" }) {
		out = append(out, groupToAPI(g))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *srv) putGroup(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.GroupRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	gs, err := s.Store.Groups(r.Context())
	if err != nil {
		return err
	}
	for _, g := range gs {
		if g.Name == req.Name && !c.canWrite(g.Academy) {
			return forbidden()
		}
	}
	if !req.Delete && !c.canWrite(req.Academy) {
		return forbidden()
	}
	g := store.Group{Name: req.Name, Academy: req.Academy, Description: req.Description, Priority: req.Priority, Members: req.Members}
	if req.Rule != nil {
		rule := store.GroupRule(*req.Rule)
		g.Rule = &rule
	}
	return s.apply(w, r, director.PutGroup{Group: g, Delete: req.Delete}, c, req.DryRun)
}

// --- servers ---

func (s *srv) serverInfo(sv store.Server, est store.Establishment, mf *store.Manifest, now time.Time) api.ServerInfo {
	state, reason := fleet.State(sv, mf, now)
	info := api.ServerInfo{
		ID: sv.ID, UAI: sv.UAI, Academy: est.Academy, Type: est.Type, Role: sv.Role, State: state, Reason: reason,
		AppliedSerial: sv.AppliedSerial, LastReport: sv.ReportTime, LastSeen: sv.LastSeen,
		Enrolled: sv.Enrolled, Revoked: sv.Revoked, Facts: sv.Facts,
	}
	if mf != nil {
		info.Serial = mf.Serial
	}
	return info
}

// fleetRows loads every server the caller may read, with what its state
// is derived from.
func (s *srv) fleetRows(ctx context.Context, c *caller) ([]fleet.Row, error) {
	ests, err := s.academyOfUAI(ctx)
	if err != nil {
		return nil, err
	}
	svs, err := s.Store.Servers(ctx)
	if err != nil {
		return nil, err
	}
	mfs, err := s.Store.Manifests(ctx)
	if err != nil {
		return nil, err
	}
	byServer := make(map[string]*store.Manifest, len(mfs))
	for i := range mfs {
		byServer[mfs[i].ServerID] = &mfs[i]
	}
	var rows []fleet.Row
	for _, sv := range svs {
		est := ests[sv.UAI]
		if c != nil && !c.canRead(est.Academy, sv.UAI) {
			continue
		}
		rows = append(rows, fleet.Row{Server: sv, Establishment: est, Manifest: byServer[sv.ID]})
	}
	return rows, nil
}

func (s *srv) listServers(w http.ResponseWriter, r *http.Request, c *caller) error {
	rows, err := s.fleetRows(r.Context(), c)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	now := s.now()
	out := []api.ServerInfo{}
	for _, row := range rows {
		info := s.serverInfo(row.Server, row.Establishment, row.Manifest, now)
		if (q.Get("academy") != "" && info.Academy != q.Get("academy")) || (q.Get("uai") != "" && info.UAI != q.Get("uai")) ||
			(q.Get("state") != "" && info.State != q.Get("state")) {
			continue
		}
		out = append(out, info)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// readServer loads a server the caller may read.
func (s *srv) readServer(ctx context.Context, c *caller, id string) (store.Server, store.Establishment, error) {
	sv, err := s.Store.Server(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return sv, store.Establishment{}, notFound("no server %q", id)
	}
	if err != nil {
		return sv, store.Establishment{}, err
	}
	est, err := s.Store.Establishment(ctx, sv.UAI)
	if err != nil {
		return sv, est, err
	}
	if !c.canRead(est.Academy, sv.UAI) {
		return sv, est, forbidden()
	}
	return sv, est, nil
}

func (s *srv) showServer(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	sv, est, err := s.readServer(ctx, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	var mf *store.Manifest
	if m, err := s.Store.Manifest(ctx, sv.ID); err == nil {
		mf = &m
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	certs, err := s.Store.Certificates(ctx, sv.ID)
	if err != nil {
		return err
	}
	d := api.ServerDetail{ServerInfo: s.serverInfo(sv, est, mf, s.now()), CompileError: sv.CompileError}
	if mf != nil {
		d.ManifestIssued, d.ManifestExpires = mf.Issued, mf.Expires
		for _, m := range mf.Modules {
			d.Modules = append(d.Modules, api.ServerModule{Module: m.Name, Version: m.Version, SpecDigest: m.SpecDigest})
		}
	}
	for _, ct := range certs {
		d.Certificates = append(d.Certificates, api.CertificateRef{Serial: ct.Serial, NotBefore: ct.NotBefore, NotAfter: ct.NotAfter, Revoked: ct.Revoked})
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (s *srv) revokeServer(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	sv, err := s.Store.Server(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no server %q", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	est, err := s.Store.Establishment(ctx, sv.UAI)
	if err != nil {
		return err
	}
	if !c.canWrite(est.Academy) {
		return forbidden()
	}
	if _, err := s.Director.Apply(ctx, director.RevokeServer{ServerID: sv.ID}, c.name(), false); err != nil {
		return err
	}
	if err := s.Deny.Load(ctx, s.Store); err != nil {
		return err
	}
	if sv, err = s.Store.Server(ctx, sv.ID); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.serverInfo(sv, est, nil, s.now()))
	return nil
}

// --- enrollment tokens ---

func (s *srv) listTokens(w http.ResponseWriter, r *http.Request, c *caller) error {
	ts, err := s.Store.Tokens(r.Context())
	if err != nil {
		return err
	}
	ests, err := s.academyOfUAI(r.Context())
	if err != nil {
		return err
	}
	out := []api.TokenInfo{}
	for _, t := range readable(c, ts, func(t store.Token) (string, string) { return ests[t.UAI].Academy, t.UAI }) {
		out = append(out, api.TokenInfo{ID: t.ID, UAI: t.UAI, ServerID: t.ServerID, Role: t.Role, Expires: t.Expires,
			Created: t.Created, CreatedBy: t.CreatedBy, Used: t.Used, UsedBy: t.UsedBy})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

var roleRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

func (s *srv) createToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	var req api.TokenRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	est, err := s.Store.Establishment(ctx, req.UAI)
	if errors.Is(err, store.ErrNotFound) {
		return badRequest("uai: no establishment %q", req.UAI)
	}
	if err != nil {
		return err
	}
	if !c.canWrite(est.Academy) {
		return forbidden()
	}
	if req.ServerID != "" {
		if !validServerID(req.ServerID) {
			return badRequest("server_id: 1 to %d of a-z 0-9 . _ -", manifest.MaxNameLength)
		}
		if sv, err := s.Store.Server(ctx, req.ServerID); err == nil && sv.UAI != req.UAI {
			return badRequest("server_id: server %s belongs to establishment %s", req.ServerID, sv.UAI)
		}
	}
	if req.Role != "" && !roleRE.MatchString(req.Role) {
		return badRequest("role: a-z, 0-9 and -, at most 32 (amon, scribe…)")
	}
	ttl := s.Settings.TokenTTL
	if req.TTLSeconds != 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	if ttl <= 0 || ttl > s.Settings.MaxTokenTTL {
		return badRequest("ttl_seconds: 1 to %d", int(s.Settings.MaxTokenTTL/time.Second))
	}
	now := s.now()
	tok := api.Token{ID: randomWord(10), Secret: randomWord(24), CAHash: s.CA.Hash()}
	t := store.Token{ID: tok.ID, SecretHash: hashSecret(tok.Secret), UAI: req.UAI, ServerID: req.ServerID, Role: req.Role,
		Expires: now.Add(ttl), Created: now, CreatedBy: c.name()}
	detail, _ := json.Marshal(map[string]any{"token": t.ID, "server_id": t.ServerID, "expires": t.Expires})
	err = s.Store.Commit(ctx, &store.Batch{
		Tokens: []store.Token{t},
		Audit:  []store.AuditEntry{{Time: now, Actor: c.name(), Action: "token.create", Target: "establishment:" + req.UAI, Detail: detail}},
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.TokenResponse{Token: tok.String(), ID: tok.ID, Expires: t.Expires})
	return nil
}

// --- variables, modules, assignments, push ---

// levelReadable reports whether the caller may read what is set at a level.
func (s *srv) levelReadable(c *caller, l store.Level, ests map[string]store.Establishment, servers map[string]store.Server, groups map[string]store.Group) bool {
	switch l.Kind {
	case store.LevelFleet:
		return c.canRead("", "")
	case store.LevelAcademy:
		return c.canRead(l.ID, "")
	case store.LevelGroup:
		return c.canRead(groups[l.ID].Academy, "")
	case store.LevelEstablishment:
		return c.canRead(ests[l.ID].Academy, l.ID)
	case store.LevelServer:
		sv := servers[l.ID]
		return c.canRead(ests[sv.UAI].Academy, sv.UAI)
	}
	return false
}

// levelFilter returns levelReadable with the inventory loaded.
func (s *srv) levelFilter(ctx context.Context, c *caller) (func(store.Level) bool, error) {
	ests, err := s.academyOfUAI(ctx)
	if err != nil {
		return nil, err
	}
	svs, err := s.Store.Servers(ctx)
	if err != nil {
		return nil, err
	}
	servers := map[string]store.Server{}
	for _, sv := range svs {
		servers[sv.ID] = sv
	}
	gs, err := s.Store.Groups(ctx)
	if err != nil {
		return nil, err
	}
	groups := map[string]store.Group{}
	for _, g := range gs {
		groups[g.Name] = g
	}
	return func(l store.Level) bool { return s.levelReadable(c, l, ests, servers, groups) }, nil
}

func (s *srv) listVariables(w http.ResponseWriter, r *http.Request, c *caller) error {
	ok, err := s.levelFilter(r.Context(), c)
	if err != nil {
		return err
	}
	vs, err := s.Store.Variables(r.Context())
	if err != nil {
		return err
	}
	want := r.URL.Query().Get("level")
	out := []api.VariableInfo{}
	for _, v := range vs {
		if !ok(v.Level) || (want != "" && v.Level.String() != want) {
			continue
		}
		info := api.VariableInfo{Level: v.Level.String(), Name: v.Name, Value: v.Value, Generation: v.Generation, Updated: v.Updated, UpdatedBy: v.UpdatedBy}
		if v.Secret() {
			info.Value, info.Secret = json.RawMessage(`"(secret)"`), true
		}
		out = append(out, info)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *srv) setVariable(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.VariableRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	l, err := s.writeLevel(r.Context(), c, req.Level)
	if err != nil {
		return err
	}
	return s.apply(w, r, director.SetVariable{Level: l, Name: req.Name, Value: req.Value, Secret: req.Secret, Unset: req.Unset, Actor: c.name()}, c, req.DryRun)
}

func moduleToAPI(m store.Module) api.ModuleInfo {
	return api.ModuleInfo{Name: m.Name, Version: m.Version, Kind: m.Kind, Counter: m.Counter, Digest: m.Digest, Agent: m.Agent,
		Published: m.Published, PublishedBy: m.PublishedBy}
}

func (s *srv) listModules(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.canRead("", "") {
		return forbidden()
	}
	ms, err := s.Store.Modules(r.Context())
	if err != nil {
		return err
	}
	out := []api.ModuleInfo{}
	for _, m := range ms {
		out = append(out, moduleToAPI(m))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *srv) publishModule(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.PublishRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if !c.fleetAdmin() {
		return forbidden()
	}
	m, err := s.Director.Publish(r.Context(), []byte(req.Definition), req.Release, c.name())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, moduleToAPI(m))
	return nil
}

func (s *srv) listAssignments(w http.ResponseWriter, r *http.Request, c *caller) error {
	ok, err := s.levelFilter(r.Context(), c)
	if err != nil {
		return err
	}
	as, err := s.Store.Assignments(r.Context())
	if err != nil {
		return err
	}
	out := []api.AssignmentInfo{}
	for _, a := range as {
		if ok(a.Level) {
			out = append(out, api.AssignmentInfo{Level: a.Level.String(), Module: a.Module, Version: a.Version, Updated: a.Updated, UpdatedBy: a.UpdatedBy})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *srv) assign(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.AssignRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	l, err := s.writeLevel(r.Context(), c, req.Level)
	if err != nil {
		return err
	}
	if !req.Unassign && req.Version == "" {
		return badRequest("version: which version to assign (or \"none\" to exclude the module here)")
	}
	return s.apply(w, r, director.Assign{Level: l, Module: req.Module, Version: req.Version, Unassign: req.Unassign, Actor: c.name()}, c, req.DryRun)
}

func (s *srv) push(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.PushRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	l, err := s.writeLevel(r.Context(), c, req.Level)
	if err != nil {
		return err
	}
	return s.apply(w, r, director.Push{Level: l, Force: req.Force}, c, req.DryRun)
}

// --- rosters ---

func (s *srv) importRoster(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	uai := r.PathValue("uai")
	data, err := readBody(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiError(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "roster larger than %d bytes", api.MaxRequestBody)
		}
		return badRequest("reading the roster: %v", err)
	}
	est, err := s.Store.Establishment(ctx, uai)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no establishment %q", uai)
	}
	if err != nil {
		return err
	}
	if !c.canWrite(est.Academy) {
		return forbidden()
	}
	dryRun, _ := strconv.ParseBool(r.URL.Query().Get("dry_run"))
	file, err := roster.ParseCSV(data)
	if err != nil {
		return badRequest("roster: %v", err)
	}
	canonical := roster.FormatCSV(file.People)
	rp := api.RosterPlan{UAI: uai, Digest: manifest.Digest(canonical), People: len(file.People), Encoding: file.Encoding}
	// Against the establishment's current roster, by stable id.
	prev := map[string]roster.Person{}
	vs, err := s.Store.Variables(ctx)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if v.Level == (store.Level{Kind: store.LevelEstablishment, ID: uai}) && v.Name == director.RosterVariable {
			var digest string
			if json.Unmarshal(v.Value, &digest) == nil {
				if b, err := s.Store.Blob(ctx, digest); err == nil {
					if old, err := roster.ParseCSV(b.Data); err == nil {
						for _, p := range old.People {
							prev[p.ID] = p
						}
					}
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, p := range file.People {
		seen[p.ID] = true
		old, ok := prev[p.ID]
		switch {
		case !ok:
			rp.Added = append(rp.Added, p.ID)
		case !slices.Equal(roster.FormatCSV([]roster.Person{old}), roster.FormatCSV([]roster.Person{p})):
			rp.Changed = append(rp.Changed, p.ID)
		}
	}
	for id := range prev {
		if !seen[id] {
			rp.Departed = append(rp.Departed, id)
		}
	}
	slices.Sort(rp.Departed)
	plan, err := s.Director.Apply(ctx, director.ImportRoster{UAI: uai, Data: canonical, People: len(file.People), Actor: c.name()}, c.name(), dryRun)
	if err != nil {
		return err
	}
	rp.Plan = *plan
	writeJSON(w, http.StatusOK, rp)
	return nil
}

// --- reports, indicators, audit ---

func (s *srv) listReports(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	f := store.ReportFilter{ServerID: q.Get("server"), Limit: limit}
	if f.ServerID != "" {
		if _, _, err := s.readServer(ctx, c, f.ServerID); err != nil {
			return err
		}
	} else if !c.seesAll() {
		f.Limit = 1000 // filtered below
	}
	rs, err := s.Store.Reports(ctx, f)
	if err != nil {
		return err
	}
	var scope map[string]bool
	if f.ServerID == "" && !c.seesAll() {
		rows, err := s.fleetRows(ctx, c)
		if err != nil {
			return err
		}
		scope = map[string]bool{}
		for _, row := range rows {
			scope[row.Server.ID] = true
		}
	}
	out := []api.ReportInfo{}
	for _, rp := range rs {
		if scope != nil && !scope[rp.ServerID] {
			continue
		}
		if len(out) == limit {
			break
		}
		info := api.ReportInfo{ServerID: rp.ServerID, Received: rp.Received}
		if err := json.Unmarshal(rp.Body, &info.Report); err != nil {
			return fmt.Errorf("report %s of %s: %w", rp.ID, rp.ServerID, err)
		}
		out = append(out, info)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *srv) indicators(w http.ResponseWriter, r *http.Request, c *caller) error {
	rows, err := s.fleetRows(r.Context(), c)
	if err != nil {
		return err
	}
	ind := fleet.Indicators(rows, s.now())
	if r.URL.Query().Get("format") == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Write(fleet.CSV(ind))
		return nil
	}
	writeJSON(w, http.StatusOK, ind)
	return nil
}

func (s *srv) audit(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.seesAll() {
		return forbidden()
	}
	q := r.URL.Query()
	f := store.AuditFilter{Actor: q.Get("actor"), Target: q.Get("target")}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return badRequest("since: a time such as 2025-09-01T08:00:00Z")
		}
		f.Since = t
	}
	f.Limit, _ = strconv.Atoi(q.Get("limit"))
	if f.Limit <= 0 || f.Limit > 10000 {
		f.Limit = 100
	}
	es, err := s.Store.Audit(r.Context(), f)
	if err != nil {
		return err
	}
	out := []api.AuditEntry{}
	for _, e := range es {
		out = append(out, api.AuditEntry(e))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// --- operators ---

func operatorToAPI(o store.Operator) api.OperatorInfo {
	return api.OperatorInfo{ID: o.ID, Name: o.Name, Role: o.Role, Scope: o.Scope, Created: o.Created, CreatedBy: o.CreatedBy, Revoked: o.Revoked}
}

func (s *srv) listOperators(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.fleetAdmin() {
		return forbidden()
	}
	os, err := s.Store.Operators(r.Context())
	if err != nil {
		return err
	}
	out := []api.OperatorInfo{}
	for _, o := range os {
		out = append(out, operatorToAPI(o))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

var operatorNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// CheckOperator checks a new operator's name, role and scope against the
// inventory.
func CheckOperator(ctx context.Context, s store.Store, req api.OperatorRequest) error {
	if !operatorNameRE.MatchString(req.Name) {
		return badRequest("name: a-z, 0-9, . _ @ -, at most 64")
	}
	academies := func() error {
		as, err := s.Academies(ctx)
		if err != nil {
			return err
		}
		for i, a := range req.Scope {
			if !slices.ContainsFunc(as, func(x store.Academy) bool { return x.Name == a }) {
				return badRequest("scope[%d]: no academy %q", i, a)
			}
		}
		return nil
	}
	switch req.Role {
	case api.RoleFleetAdmin:
		if len(req.Scope) > 0 {
			return badRequest("scope: a fleet admin has none")
		}
	case api.RoleAcademyAdmin:
		if len(req.Scope) == 0 {
			return badRequest("scope: the academies this admin manages")
		}
		return academies()
	case api.RoleViewer:
		return academies()
	case api.RoleTechnician:
		if len(req.Scope) != 1 {
			return badRequest("scope: the one UAI of the technician's establishment")
		}
		if _, err := s.Establishment(ctx, req.Scope[0]); errors.Is(err, store.ErrNotFound) {
			return badRequest("scope[0]: no establishment %q", req.Scope[0])
		} else if err != nil {
			return err
		}
	default:
		return badRequest("role: one of %s, %s, %s, %s", api.RoleFleetAdmin, api.RoleAcademyAdmin, api.RoleTechnician, api.RoleViewer)
	}
	return nil
}

func (s *srv) createOperator(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.OperatorRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if !c.fleetAdmin() {
		return forbidden()
	}
	if err := CheckOperator(r.Context(), s.Store, req); err != nil {
		return err
	}
	id, token, hash := NewOperatorToken()
	now := s.now()
	o := store.Operator{ID: id, Name: req.Name, Role: req.Role, Scope: req.Scope, SecretHash: hash, Created: now, CreatedBy: c.name()}
	detail, _ := json.Marshal(map[string]any{"role": o.Role, "scope": o.Scope})
	err := s.Store.Commit(r.Context(), &store.Batch{
		Operators: []store.Operator{o},
		Audit:     []store.AuditEntry{{Time: now, Actor: c.name(), Action: "operator.create", Target: "operator:" + o.Name, Detail: detail}},
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.OperatorResponse{Operator: operatorToAPI(o), Token: token})
	return nil
}

func (s *srv) revokeOperator(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.fleetAdmin() {
		return forbidden()
	}
	ctx := r.Context()
	o, err := s.Store.Operator(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return notFound("no operator %q", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	if o.ID == c.ID {
		return badRequest("an operator cannot revoke itself: ask another fleet admin")
	}
	err = s.Store.Commit(ctx, &store.Batch{
		RevokeOperators: []string{o.ID},
		Audit:           []store.AuditEntry{{Time: s.now(), Actor: c.name(), Action: "operator.revoke", Target: "operator:" + o.Name}},
	})
	if err != nil {
		return err
	}
	o, err = s.Store.Operator(ctx, o.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, operatorToAPI(o))
	return nil
}

// --- roots ---

func (s *srv) listRoots(w http.ResponseWriter, r *http.Request, _ *caller) error {
	rs, err := s.Store.Roots(r.Context())
	if err != nil {
		return err
	}
	out := []api.RootInfo{}
	for _, rt := range rs {
		out = append(out, api.RootInfo{Version: rt.Version, Expires: rt.Expires, Added: rt.Added})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *srv) publishRoot(w http.ResponseWriter, r *http.Request, c *caller) error {
	ctx := r.Context()
	var req api.RootRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if !c.fleetAdmin() {
		return forbidden()
	}
	old := s.Roots.Current()
	var next *manifest.Trust
	now := s.now()
	err := func() error {
		unlock, err := s.Store.Lock(ctx)
		if err != nil {
			return err
		}
		defer unlock()
		old = s.Roots.Current()
		next, err = s.Roots.next(req.Envelope)
		if err != nil {
			return badRequest("root: refused: %v", err)
		}
		dks, err := keys.DirectorKeys(s.Settings.KeysDir, next.Root())
		if err != nil {
			return badRequest("root version %d: %v", next.Version(), err)
		}
		err = s.Store.Commit(ctx, &store.Batch{
			Roots:  []store.Root{{Version: next.Version(), Envelope: req.Envelope, Expires: next.Root().Expires, Added: now}},
			Audit:  []store.AuditEntry{{Time: now, Actor: c.name(), Action: "root.publish", Target: fmt.Sprintf("root:%d", next.Version()), After: manifest.Digest(req.Envelope)}},
			Events: []store.Event{{Kind: store.EventRoots}},
		})
		if err != nil {
			return err
		}
		envs := make([][]byte, 0, next.Version())
		for v := 1; v < next.Version(); v++ {
			env, _ := s.Roots.Envelope(v)
			envs = append(envs, env)
		}
		s.Roots.set(next, append(envs, []byte(req.Envelope)))
		s.Director.SetKeys(dks)
		return nil
	}()
	if err != nil {
		return err
	}
	if !slices.Equal(old.Root().Roles.Director.KeyIDs, next.Root().Roles.Director.KeyIDs) {
		// Agents take manifests of the new director key once they walk
		// to this root: sign every manifest with it now.
		if _, err := s.Director.Apply(ctx, director.Push{Level: store.Level{Kind: store.LevelFleet}, Force: true}, c.name(), false); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, api.RootInfo{Version: next.Version(), Expires: next.Root().Expires, Added: now})
	return nil
}
