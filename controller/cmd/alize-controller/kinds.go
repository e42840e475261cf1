package main

import (
	"fmt"

	"github.com/alize-eple/alize/modules"
	"github.com/alize-eple/alize/modules/accounts"
	"github.com/alize-eple/alize/modules/firewall"
	"github.com/alize-eple/alize/modules/shares"
)

// kindCheckers wires the kinds the controller knows: each one's strict
// decode and Validate, run on every compiled spec before it is signed. A
// module of a kind not listed here is refused at publication. This is
// the one place kinds are wired into the controller.
func kindCheckers() (map[string]modules.SpecChecker, error) {
	// The firewall and shares kinds check specs without touching the
	// system: the controller builds them for Validate only.
	fw, err := firewall.New(firewall.Config{Root: "/"})
	if err != nil {
		return nil, fmt.Errorf("firewall kind: %w", err)
	}
	sh, err := shares.New(shares.Config{})
	if err != nil {
		return nil, fmt.Errorf("shares kind: %w", err)
	}
	return map[string]modules.SpecChecker{
		fw.Name():  modules.CheckerFor[firewall.Spec](fw),
		"accounts": accounts.Checker(),
		sh.Name():  modules.CheckerFor[shares.Spec](sh),
	}, nil
}
