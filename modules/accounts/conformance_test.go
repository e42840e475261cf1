package accounts

import (
	"testing"

	"github.com/alize-eple/alize/modules/accounts/roster"
	"github.com/alize-eple/alize/modules/moduletest"
)

// TestConformance runs the kind contract on a whole school: 2,000 pupils,
// 150 staff, 60 classes, from a roster blob, with Samba accounts.
func TestConformance(t *testing.T) {
	l := startSlapd(t)
	blobs := memBlobs{}
	digest := blobs.put(roster.FormatCSV(genSchool(2000, 150, 60)))
	k := newKind(t, l, func(c *Config) { c.Blobs = blobs })
	want := Spec{
		UAI: testSchool.UAI, Academy: testSchool.Academy,
		Samba:  &Samba{DomainSID: "S-1-5-21-1111-2222-3333"},
		Roster: Roster{Blob: digest, Complete: true},
	}
	moduletest.Run(t, k, want, dump(l))
}
