package firewall

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/alize-eple/alize/modules"
)

// An allow is a bare service name or an object, decoded strictly by both
// decoders DecodeSpec may use.
func TestAllowForms(t *testing.T) {
	spec := `{"zones":[{"name":"a","interfaces":["eth0"],"services":["ssh",{"protocol":"tcp","port":8080},{"service":"dns","sources":["10.0.0.0/8"]}]}]}`
	got, err := modules.DecodeSpec[Spec]([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	want := []Allow{{Service: "ssh"}, {Protocol: "tcp", Port: 8080}, {Service: "dns", Sources: []string{"10.0.0.0/8"}}}
	if diff := cmp.Diff(want, got.Zones[0].Services); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{"portt":80}`, `42`, `["ssh"]`, `{"port":"80"}`} {
		s := strings.Replace(spec, `"ssh"`, bad, 1)
		if _, err := modules.DecodeSpec[Spec]([]byte(s)); err == nil {
			t.Errorf("DecodeSpec with the allow %s: no error", bad)
		}
	}
}
