package firewall

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/alize-eple/alize/testenv"
	"github.com/google/go-cmp/cmp"
)

// TestRenderGolden renders every spec of testdata and compares it with
// its golden file; -update rewrites them.
func TestRenderGolden(t *testing.T) {
	for name, spec := range goldenSpecs(t) {
		t.Run(name, func(t *testing.T) {
			if err := validate(spec).Err(); err != nil {
				t.Fatalf("Validate(%s) = %v, want nil", name, err)
			}
			got := compile(spec, goldenLifelines()).render()
			golden := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("render(%s) differs from %s (-want +got):\n%s", name, golden, diff)
			}
		})
	}
}

// TestRenderIsDeterministic renders the same spec twice.
func TestRenderIsDeterministic(t *testing.T) {
	for name, spec := range goldenSpecs(t) {
		a := string(compile(spec, goldenLifelines()).render())
		b := string(compile(spec, goldenLifelines()).render())
		if a != b {
			t.Errorf("render(%s) gave two different texts", name)
		}
	}
}

// TestGoldenFilesPassNftCheck runs `nft -c -f` on every golden file, in a
// fresh network namespace.
func TestGoldenFilesPassNftCheck(t *testing.T) {
	testenv.Require(t, "nft", "netns")
	ns := testenv.NewNetNS(t, "check")
	for name := range goldenSpecs(t) {
		golden := filepath.Join("testdata", name+".nft")
		if out, err := ns.Run(exec.Command(nftBinary(t), "-c", "-f", golden)); err != nil {
			t.Errorf("nft -c -f %s: %v\n%s", golden, err, out)
		}
	}
}
