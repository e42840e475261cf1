package server

import (
	"net/http"
	"time"

	"github.com/alize-eple/alize/controller/api"
)

// Who authenticates a route.
const (
	authNone     = "none"     // health, metrics; enrollment (token) and expired renewal (proof) check their own
	authAgent    = "agent"    // the agent's client certificate
	authOperator = "operator" // a bearer token with a role
)

// route is one route of the API.
type route struct {
	pattern string // as http.ServeMux takes it
	auth    string
	public  func(w http.ResponseWriter, r *http.Request) error
	agent   func(w http.ResponseWriter, r *http.Request, id string) error
	op      func(w http.ResponseWriter, r *http.Request, c *caller) error
}

// routes lists every route the controller serves.
func (s *srv) routes() []route {
	pub := func(p string, h func(http.ResponseWriter, *http.Request) error) route {
		return route{pattern: p, auth: authNone, public: h}
	}
	agent := func(p string, h func(http.ResponseWriter, *http.Request, string) error) route {
		return route{pattern: p, auth: authAgent, agent: h}
	}
	op := func(p string, h func(http.ResponseWriter, *http.Request, *caller) error) route {
		return route{pattern: p, auth: authOperator, op: h}
	}
	return []route{
		pub("GET "+api.PathHealthz, s.healthz),
		pub("GET "+api.PathReadyz, s.readyz),
		pub("GET "+api.PathMetrics, s.metrics),

		// Agents (controller/api, docs/api.md).
		pub("POST "+api.PathEnroll, s.enroll),
		pub("POST "+api.PathRenewExpired, s.renewExpired),
		agent("GET "+api.PathManifest, s.manifest),
		agent("GET "+api.PathBlobs+"{digest}", s.blob),
		agent("POST "+api.PathReports, s.report),
		agent("GET "+api.PathRoots+"{version}", s.root),
		agent("POST "+api.PathRenew, s.renew),

		// Operators (controller/api/operator.go, docs/operator.md).
		op("GET "+api.PathAdminWhoami, s.whoami),
		op("GET "+api.PathAdminAcademies, s.listAcademies),
		op("POST "+api.PathAdminAcademies, s.putAcademy),
		op("GET "+api.PathAdminEstablishments, s.listEstablishments),
		op("POST "+api.PathAdminEstablishments, s.putEstablishment),
		op("GET "+api.PathAdminGroups, s.listGroups),
		op("POST "+api.PathAdminGroups, s.putGroup),
		op("GET "+api.PathAdminServers, s.listServers),
		op("GET "+api.PathAdminServers+"/{id}", s.showServer),
		op("POST "+api.PathAdminServers+"/{id}/revoke", s.revokeServer),
		op("GET "+api.PathAdminTokens, s.listTokens),
		op("POST "+api.PathAdminTokens, s.createToken),
		op("GET "+api.PathAdminVariables, s.listVariables),
		op("POST "+api.PathAdminVariables, s.setVariable),
		op("GET "+api.PathAdminModules, s.listModules),
		op("POST "+api.PathAdminModules, s.publishModule),
		op("GET "+api.PathAdminAssignments, s.listAssignments),
		op("POST "+api.PathAdminAssignments, s.assign),
		op("POST "+api.PathAdminPush, s.push),
		op("POST "+api.PathAdminRosters+"{uai}", s.importRoster),
		op("GET "+api.PathAdminReports, s.listReports),
		op("GET "+api.PathAdminIndicators, s.indicators),
		op("GET "+api.PathAdminAudit, s.audit),
		op("GET "+api.PathAdminOperators, s.listOperators),
		op("POST "+api.PathAdminOperators, s.createOperator),
		op("POST "+api.PathAdminOperators+"/{id}/revoke", s.revokeOperator),
		op("GET "+api.PathAdminRoots, s.listRoots),
		op("POST "+api.PathAdminRoots, s.publishRoot),
	}
}

// handler builds the mux from routes, each wrapped with its
// authentication and metrics.
func (s *srv) handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern, s.wrap(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeErr(w, r, notFound("no route %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *srv) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		var err error
		switch rt.auth {
		case authNone:
			err = rt.public(sw, r)
		case authAgent:
			var id string
			if id, err = s.agentID(r); err == nil {
				err = rt.agent(sw, r, id)
			}
		case authOperator:
			var c *caller
			if c, err = s.authenticate(r); err == nil {
				err = rt.op(sw, r, c)
			}
		}
		if err != nil {
			s.writeErr(sw, r, err)
		}
		s.Metrics.request(rt.pattern, sw.status, time.Since(start))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
