package main

import (
	"os"
	"strings"
	"testing"
)

// TestUnitMatchesPackaging: alize service install writes the unit the
// Debian package ships.
func TestUnitMatchesPackaging(t *testing.T) {
	shipped, err := os.ReadFile("../../../packaging/systemd/alize.service")
	if err != nil {
		t.Fatal(err)
	}
	rendered := strings.Replace(unitTemplate, "{{Path | cmdEscape}}", "/usr/bin/alize", 1)
	if rendered != string(shipped) {
		t.Errorf("unitTemplate differs from packaging/systemd/alize.service: keep them the same")
	}
	for _, want := range []string{"Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=", "PrivateTmp=yes", "ProtectHome="} {
		if !strings.Contains(unitTemplate, want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	if strings.Count(unitTemplate, "{{") != 1 {
		t.Errorf("the unit template holds other template actions than the binary's path")
	}
}
