package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/alize-eple/alize/controller/internal/ctltest"
	"github.com/alize-eple/alize/controller/internal/keys"
)

// The roles of the table: a fleet admin, an academy admin of Versailles
// (X) and of Créteil (Y), a technician of the Versailles lycée, a viewer.
const (
	fa   = "fleet_admin"
	ax   = "academy_admin_x"
	ay   = "academy_admin_y"
	tech = "technician"
	view = "viewer"
)

var roles = []string{fa, ax, ay, tech, view}

const rosterCSV = "role;id;last_name;first_name;birth_date;class\neleve;123456789AB;Durand;Paul;2010-05-04;3A\nenseignant;T0001;Martin;Claire;;\n"

// Every operator route × every role: allowed ones succeed (dry runs where
// a route has one), the others are forbidden and change nothing. Every
// object is of Versailles: academy admin Y, of Créteil, may touch none.
func TestAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	e.publish("1.0.0", 1)
	e.setVar("fleet", "message", "x")
	e.do(e.admin, "POST", api.PathAdminGroups, api.GroupRequest{Group: api.Group{Name: "lycees-v", Academy: "versailles", Rule: &api.GroupRule{Types: []string{"lycee"}}}}, nil)
	e.agent(lyceeUAI, "amon-ref")
	tokens := map[string]string{fa: e.admin.Token}
	for role, req := range map[string]api.OperatorRequest{
		ax:   {Name: "ax", Role: api.RoleAcademyAdmin, Scope: []string{"versailles"}},
		ay:   {Name: "ay", Role: api.RoleAcademyAdmin, Scope: []string{"creteil"}},
		tech: {Name: "tech", Role: api.RoleTechnician, Scope: []string{lyceeUAI}},
		view: {Name: "view", Role: api.RoleViewer},
	} {
		var resp api.OperatorResponse
		e.do(e.admin, "POST", api.PathAdminOperators, req, &resp)
		tokens[role] = resp.Token
	}
	victims := map[string]string{}
	for _, role := range roles {
		e.agent(lyceeUAI, "srv-"+strings.ReplaceAll(role, "_", "-"))
		var resp api.OperatorResponse
		e.do(e.admin, "POST", api.PathAdminOperators, api.OperatorRequest{Name: "victim-" + strings.ReplaceAll(role, "_", "-"), Role: api.RoleViewer}, &resp)
		victims[role] = resp.Operator.ID
	}
	// A rotated root (new root key; the director key stays).
	if _, err := keys.Rotate(e.keys.Dir, []string{"root"}, time.Now().AddDate(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	root2, err := os.ReadFile(filepath.Join(e.keys.Dir, keys.RootFile(2)))
	if err != nil {
		t.Fatal(err)
	}
	def := ctltest.NoteModule("1.1.0")
	release := e.keys.Sign(t, def, 2)
	all := roles
	srv := func(role string) string { return "srv-" + strings.ReplaceAll(role, "_", "-") }

	type request struct {
		method, path string
		body         any
	}
	rows := map[string]struct {
		req     func(role string) request
		allowed []string
	}{
		"GET " + api.PathAdminWhoami:    {func(string) request { return request{"GET", api.PathAdminWhoami, nil} }, all},
		"GET " + api.PathAdminAcademies: {func(string) request { return request{"GET", api.PathAdminAcademies, nil} }, all},
		"POST " + api.PathAdminAcademies: {func(string) request {
			return request{"POST", api.PathAdminAcademies, api.Academy{Name: "versailles", Title: "Versailles"}}
		}, []string{fa}},
		"GET " + api.PathAdminEstablishments: {func(string) request { return request{"GET", api.PathAdminEstablishments, nil} }, all},
		"POST " + api.PathAdminEstablishments: {func(string) request {
			return request{"POST", api.PathAdminEstablishments, api.EstablishmentRequest{Establishment: api.Establishment{UAI: lyceeUAI, Academy: "versailles", Name: "Lycée", Type: "lycee", Zone: "C"}, DryRun: true}}
		}, []string{fa, ax}},
		"GET " + api.PathAdminGroups: {func(string) request { return request{"GET", api.PathAdminGroups, nil} }, all},
		"POST " + api.PathAdminGroups: {func(string) request {
			return request{"POST", api.PathAdminGroups, api.GroupRequest{Group: api.Group{Name: "lycees-v", Academy: "versailles"}, DryRun: true}}
		}, []string{fa, ax}},
		"GET " + api.PathAdminServers:                   {func(string) request { return request{"GET", api.PathAdminServers, nil} }, all},
		"GET " + api.PathAdminServers + "/{id}":         {func(string) request { return request{"GET", api.PathAdminServers + "/amon-ref", nil} }, []string{fa, ax, tech, view}},
		"POST " + api.PathAdminServers + "/{id}/revoke": {func(r string) request { return request{"POST", api.PathAdminServers + "/" + srv(r) + "/revoke", nil} }, []string{fa, ax}},
		"GET " + api.PathAdminTokens:                    {func(string) request { return request{"GET", api.PathAdminTokens, nil} }, all},
		"POST " + api.PathAdminTokens:                   {func(string) request { return request{"POST", api.PathAdminTokens, api.TokenRequest{UAI: lyceeUAI}} }, []string{fa, ax}},
		"GET " + api.PathAdminVariables:                 {func(string) request { return request{"GET", api.PathAdminVariables, nil} }, all},
		"POST " + api.PathAdminVariables: {func(string) request {
			return request{"POST", api.PathAdminVariables, api.VariableRequest{Level: "establishment:" + lyceeUAI, Name: "message", Value: json.RawMessage(`"y"`), DryRun: true}}
		}, []string{fa, ax}},
		"GET " + api.PathAdminModules: {func(string) request { return request{"GET", api.PathAdminModules, nil} }, []string{fa, ax, ay, view}},
		"POST " + api.PathAdminModules: {func(string) request {
			return request{"POST", api.PathAdminModules, api.PublishRequest{Definition: string(def), Release: release}}
		}, []string{fa}},
		"GET " + api.PathAdminAssignments: {func(string) request { return request{"GET", api.PathAdminAssignments, nil} }, all},
		"POST " + api.PathAdminAssignments: {func(string) request {
			return request{"POST", api.PathAdminAssignments, api.AssignRequest{Level: "academy:versailles", Module: "motd", Version: "1.0.0", DryRun: true}}
		}, []string{fa, ax}},
		"POST " + api.PathAdminPush: {func(string) request {
			return request{"POST", api.PathAdminPush, api.PushRequest{Level: "academy:versailles", DryRun: true}}
		}, []string{fa, ax}},
		"POST " + api.PathAdminRosters + "{uai}": {func(string) request {
			return request{"POST", api.PathAdminRosters + lyceeUAI + "?dry_run=true", []byte(rosterCSV)}
		}, []string{fa, ax}},
		"GET " + api.PathAdminReports:    {func(string) request { return request{"GET", api.PathAdminReports + "?server=amon-ref", nil} }, []string{fa, ax, tech, view}},
		"GET " + api.PathAdminIndicators: {func(string) request { return request{"GET", api.PathAdminIndicators, nil} }, all},
		"GET " + api.PathAdminAudit:      {func(string) request { return request{"GET", api.PathAdminAudit, nil} }, []string{fa, view}},
		"GET " + api.PathAdminOperators:  {func(string) request { return request{"GET", api.PathAdminOperators, nil} }, []string{fa}},
		"POST " + api.PathAdminOperators: {func(r string) request {
			return request{"POST", api.PathAdminOperators, api.OperatorRequest{Name: "new-" + srv(r), Role: api.RoleViewer}}
		}, []string{fa}},
		"POST " + api.PathAdminOperators + "/{id}/revoke": {func(r string) request {
			return request{"POST", api.PathAdminOperators + "/" + victims[r] + "/revoke", nil}
		}, []string{fa}},
		"GET " + api.PathAdminRoots:  {func(string) request { return request{"GET", api.PathAdminRoots, nil} }, all},
		"POST " + api.PathAdminRoots: {func(string) request { return request{"POST", api.PathAdminRoots, api.RootRequest{Envelope: root2}} }, []string{fa}},
	}

	// Every operator route has a row: a route added without one fails here.
	for _, rt := range e.ctl.srv.routes() {
		if rt.auth != authOperator {
			continue
		}
		if _, ok := rows[rt.pattern]; !ok {
			t.Errorf("route %s has no row in the authorization table", rt.pattern)
		}
	}
	for pattern, row := range rows {
		for _, role := range roles {
			t.Run(pattern+"/"+role, func(t *testing.T) {
				rq := row.req(role)
				before := e.auditCount()
				err := e.operator(tokens[role]).Do(ctx, rq.method, rq.path, rq.body, nil)
				allowed := slices.Contains(row.allowed, role)
				switch {
				case allowed && err != nil:
					t.Errorf("%s %s as %s = %v, want allowed", rq.method, rq.path, role, err)
				case !allowed && ctltest.CodeOf(err) != api.CodeForbidden:
					t.Errorf("%s %s as %s = %v, want forbidden", rq.method, rq.path, role, err)
				case !allowed && e.auditCount() != before:
					t.Errorf("%s %s as %s: forbidden, yet the audit log grew", rq.method, rq.path, role)
				}
			})
		}
	}

	// Beyond the table: the levels and academies each role may change.
	for _, tc := range []struct {
		role string
		req  any
		path string
		want string // "" allowed, else the error code
	}{
		{ax, api.VariableRequest{Level: "fleet", Name: "message", Value: json.RawMessage(`"z"`), DryRun: true}, api.PathAdminVariables, api.CodeForbidden},
		{ax, api.VariableRequest{Level: "academy:creteil", Name: "message", Value: json.RawMessage(`"z"`), DryRun: true}, api.PathAdminVariables, api.CodeForbidden},
		{ay, api.VariableRequest{Level: "academy:creteil", Name: "message", Value: json.RawMessage(`"z"`), DryRun: true}, api.PathAdminVariables, ""},
		{ax, api.VariableRequest{Level: "academy:versailles", Name: "message", Value: json.RawMessage(`"z"`), DryRun: true}, api.PathAdminVariables, ""},
		{ay, api.VariableRequest{Level: "group:lycees-v", Name: "message", Value: json.RawMessage(`"z"`), DryRun: true}, api.PathAdminVariables, api.CodeForbidden},
		{ay, api.VariableRequest{Level: "server:amon-ref", Name: "message", Value: json.RawMessage(`"z"`), DryRun: true}, api.PathAdminVariables, api.CodeForbidden},
		{ax, api.AssignRequest{Level: "fleet", Module: "motd", Version: "1.0.0", DryRun: true}, api.PathAdminAssignments, api.CodeForbidden},
		{ax, api.EstablishmentRequest{Establishment: api.Establishment{UAI: creteilUAI, Academy: "versailles", Name: "Moved", Type: "college", Zone: "C"}, DryRun: true}, api.PathAdminEstablishments, api.CodeForbidden},
		{ay, api.EstablishmentRequest{Establishment: api.Establishment{UAI: collegeUAI, Academy: "creteil", Name: "Moved", Type: "college", Zone: "C"}, DryRun: true}, api.PathAdminEstablishments, api.CodeForbidden},
		{ax, api.GroupRequest{Group: api.Group{Name: "fleet-wide"}, DryRun: true}, api.PathAdminGroups, api.CodeForbidden},
		{ay, api.TokenRequest{UAI: lyceeUAI}, api.PathAdminTokens, api.CodeForbidden},
		{ay, api.TokenRequest{UAI: creteilUAI}, api.PathAdminTokens, ""},
		{tech, api.TokenRequest{UAI: lyceeUAI}, api.PathAdminTokens, api.CodeForbidden},
	} {
		err := e.operator(tokens[tc.role]).Do(ctx, "POST", tc.path, tc.req, nil)
		if got := ctltest.CodeOf(err); got != tc.want || (tc.want == "" && err != nil) {
			t.Errorf("POST %s %+v as %s = %v, want %q", tc.path, tc.req, tc.role, err, tc.want)
		}
	}

	// What each role reads of lists.
	for _, tc := range []struct {
		role    string
		servers int
	}{{fa, 6}, {ax, 6}, {ay, 0}, {tech, 6}, {view, 6}} {
		var list []api.ServerInfo
		if err := e.operator(tokens[tc.role]).Do(ctx, "GET", api.PathAdminServers, nil, &list); err != nil || len(list) != tc.servers {
			t.Errorf("GET servers as %s = %d servers, %v; want %d", tc.role, len(list), err, tc.servers)
		}
	}
	var vars []api.VariableInfo
	e.do(e.operator(tokens[tech]), "GET", api.PathAdminVariables, nil, &vars)
	if len(vars) != 0 {
		t.Errorf("the technician reads fleet variables: %+v", vars)
	}

	// No token, a bad token, a revoked token: unauthorized.
	for _, token := range []string{"", "alizeop1.nobody.secret", strings.TrimSpace(tokens[fa]) + "x"} {
		if err := e.operator(token).Do(ctx, "GET", api.PathAdminWhoami, nil, nil); ctltest.CodeOf(err) != api.CodeUnauthorized {
			t.Errorf("whoami with token %q = %v, want unauthorized", token, err)
		}
	}
	var ops []api.OperatorInfo
	e.do(e.admin, "GET", api.PathAdminOperators, nil, &ops)
	for _, o := range ops {
		if o.Name == "view" {
			e.do(e.admin, "POST", fmt.Sprintf("%s/%s/revoke", api.PathAdminOperators, o.ID), nil, nil)
		}
	}
	err = e.operator(tokens[view]).Do(ctx, "GET", api.PathAdminWhoami, nil, nil)
	var he *ctltest.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized || !strings.Contains(he.Err.Message, "revoked") {
		t.Errorf("whoami with a revoked token = %v", err)
	}
}
