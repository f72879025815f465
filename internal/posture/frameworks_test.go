package posture

import (
	"bytes"
	"strings"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/config"
)

// TestMappingsNameRealChecks: every control cites checks that exist, and
// every framework the issue names ships.
func TestMappingsNameRealChecks(t *testing.T) {
	known := map[string]bool{}
	for _, c := range checks {
		known[c.capability+"/"+c.id] = true
	}
	for _, id := range []string{"owasp-asi", "nist-ai-rmf", "nist-800-207", "iso-42001", "eu-ai-act", "soc2"} {
		fw, err := FrameworkByID(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(fw.Controls) == 0 || fw.Title == "" || fw.Source == "" {
			t.Errorf("%s: empty", id)
		}
		for _, c := range fw.Controls {
			if len(c.Checks) == 0 {
				t.Errorf("%s %s: no check", id, c.ID)
			}
			for _, ref := range c.Checks {
				if !known[ref] {
					t.Errorf("%s %s: no check %s", id, c.ID, ref)
				}
			}
		}
	}
	if fw, _ := FrameworkByID("owasp-asi"); len(fw.Controls) != 10 {
		t.Errorf("OWASP ASI: %d controls", len(fw.Controls))
	}
	if _, err := FrameworkByID("pci"); err == nil {
		t.Error("an unknown framework accepted")
	}
}

// TestOneChangeMovesControls: removing mutual TLS towards the upstream
// moves the controls that rest on it, and only those.
func TestOneChangeMovesControls(t *testing.T) {
	state := func(r *Report, fwID, control string) string {
		fw, _ := FrameworkByID(fwID)
		for _, c := range r.Evaluate(fw) {
			if c.ID == control {
				return c.State
			}
		}
		t.Fatalf("no control %s %s", fwID, control)
		return ""
	}
	base := assessWith(t, baseConfig, basePolicy, nil)
	noMTLS := assessWith(t, baseConfig, basePolicy, func(c *config.Config) { c.Upstreams[0].HTTP.ClientCertificate = nil })
	if b, a := state(base, "nist-800-207", "Tenet 2"), state(noMTLS, "nist-800-207", "Tenet 2"); b != Satisfied || a != Partial {
		t.Errorf("Tenet 2: %s -> %s", b, a)
	}
	if b, a := state(base, "owasp-asi", "ASI07"), state(noMTLS, "owasp-asi", "ASI07"); b == a {
		t.Errorf("ASI07 did not move (%s)", b)
	}
	if b, a := state(base, "eu-ai-act", "Art. 12"), state(noMTLS, "eu-ai-act", "Art. 12"); b != a {
		t.Errorf("Art. 12 moved: %s -> %s", b, a)
	}
	// Approvals satisfy human oversight's approval check.
	held := assessWith(t, baseConfig, basePolicy+approvalPolicy, nil)
	fw, _ := FrameworkByID("eu-ai-act")
	for _, c := range held.Evaluate(fw) {
		if c.ID == "Art. 14" {
			for _, u := range c.Unmet {
				if u.Ref == "output_filtering/human-approval" {
					t.Errorf("approvals not counted for Art. 14: %+v", c)
				}
			}
		}
	}
	var out bytes.Buffer
	if err := WriteControls(&out, fw, held.Evaluate(fw)); err != nil || !strings.Contains(out.String(), "Art. 14") || !strings.Contains(out.String(), "interpretation") {
		t.Errorf("controls table: %v\n%s", err, out.String())
	}
}
