package fleetsim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/alize-eple/alize/controller/api"
)

// The simulated academy and its one module.
const (
	Academy       = "versailles"
	ModuleName    = "fleetsim-noop"
	ModuleVersion = "1.0.0"
	// MarkerVariable is the module's one variable: a fleet-level change
	// sets it, and every agent reports the manifest that carries it.
	MarkerVariable = "marker"
	// InitialMarker is its default: what the first manifests carry.
	InitialMarker = "initial"
	// ServersPerEstablishment: each establishment has two servers (an
	// Amon and a Scribe, as most lycées do).
	ServersPerEstablishment = 2
)

// moduleYAML is the simulation's module. The controller knows only the
// real kinds, so it is of the shares kind (a share whose comment is the
// marker; the controller's shares checker validates it); the simulated
// agents verify it in full and apply nothing.
const moduleYAML = `name: fleetsim-noop
version: 1.0.0
kind: shares
description:
  fr: Module de la simulation de parc, sans effet
  en: The fleet simulation's module; applies nothing
variables:
  families:
    - name: simulation
      description:
        fr: Simulation
        en: Simulation
      variables:
        - name: marker
          type: string
          description:
            fr: Repère du changement
            en: Change marker
          default: initial
spec:
  shares:
    - name: fleetsim
      path: /srv/fleetsim
      comment: "${marker}"
      read: [eleves]
`

// uaiLetters are the 23 control letters of a UAI (no I, O, Q).
const uaiLetters = "ABCDEFGHJKLMNPRSTUVWXYZ"

// UAI is the i-th simulated establishment's code (département 075 on).
func UAI(i int) string {
	n := 750000 + i
	return fmt.Sprintf("%07d%c", n, uaiLetters[n%23])
}

// establishment is the i-th simulated establishment.
func establishment(i int) api.Establishment {
	typ := api.TypeCollege
	if i%3 == 0 {
		typ = api.TypeLycee
	}
	return api.Establishment{UAI: UAI(i), Academy: Academy, Name: fmt.Sprintf("Établissement simulé %d", i), Type: typ, Zone: "C"}
}

// Enrollment is one simulated server to enroll: its token and the
// establishment it belongs to.
type Enrollment struct {
	UAI      string
	ServerID string
	Role     string
	Token    string // "" for a server seeded into the store (see seed)
}

// Provision sets the academy up as operators do, through the admin API
// (what the operator command line calls): the academy, the
// establishments of the first tokens servers (seed adds the others'), the module signed with the offline
// release key and published (with the command line), assigned to the
// fleet; then one enrollment token for each of the first tokens servers,
// bound to its server id. Calls run workers at a time.
func Provision(ctx context.Context, c *Controller, servers, tokens, workers int) ([]Enrollment, error) {
	if err := c.Do(ctx, http.MethodPost, api.PathAdminAcademies, api.Academy{Name: Academy, Title: "Académie simulée"}, nil); err != nil {
		return nil, err
	}
	ests := (tokens + ServersPerEstablishment - 1) / ServersPerEstablishment
	err := parallel(ctx, ests, workers, func(i int) error {
		return c.Do(ctx, http.MethodPost, api.PathAdminEstablishments, api.EstablishmentRequest{Establishment: establishment(i)}, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("establishments: %w", err)
	}
	file := filepath.Join(c.Dir, ModuleName+".yaml")
	if err := os.WriteFile(file, []byte(moduleYAML), 0o644); err != nil {
		return nil, err
	}
	if out, err := c.CLI(ctx, "module", "sign", file, "--key", filepath.Join(c.Offline, "release.key"), "--counter", "1"); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	if out, err := c.CLI(ctx, "module", "publish", file); err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	if err := c.Do(ctx, http.MethodPost, api.PathAdminAssignments, api.AssignRequest{Level: "fleet", Module: ModuleName, Version: ModuleVersion}, nil); err != nil {
		return nil, err
	}
	enr := make([]Enrollment, servers)
	err = parallel(ctx, servers, workers, func(i int) error {
		uai := UAI(i / ServersPerEstablishment)
		role := [...]string{"amon", "scribe"}[i%2]
		id := role + "-" + strings.ToLower(uai)
		enr[i] = Enrollment{UAI: uai, ServerID: id, Role: role}
		if i >= tokens {
			return nil
		}
		var tr api.TokenResponse
		if err := c.Do(ctx, http.MethodPost, api.PathAdminTokens, api.TokenRequest{UAI: uai, ServerID: id, Role: role}, &tr); err != nil {
			return err
		}
		enr[i].Token = tr.Token
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	return enr, nil
}

// SetFleetVariable sets a fleet-level variable as `alize-controller var
// set fleet NAME VALUE` does, and returns the controller's plan: its
// answer comes once every manifest concerned is signed and stored.
func SetFleetVariable(ctx context.Context, c *Controller, name, value string) (api.Plan, error) {
	v, err := json.Marshal(value)
	if err != nil {
		return api.Plan{}, err
	}
	var p api.Plan
	err = c.Do(ctx, http.MethodPost, api.PathAdminVariables, api.VariableRequest{Level: "fleet", Name: name, Value: v}, &p)
	return p, err
}

// parallel runs fn(0..n-1), workers at a time, and returns the first
// error (the others stop being started).
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					cancel(fmt.Errorf("#%d: %w", i, err))
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}
