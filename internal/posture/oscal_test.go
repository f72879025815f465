package posture

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/jsonschema-go/jsonschema"
	"golang.org/x/mod/sumdb/note"
)

// validate checks doc against the JSON schema in file.
func validate(t *testing.T, file string, doc []byte) {
	t.Helper()
	if err := validateErr(t, file, doc); err != nil {
		t.Fatalf("the OSCAL document fails %s: %v", file, err)
	}
}

func validateErr(t *testing.T, file string, doc []byte) error {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var inst any
	if err := json.Unmarshal(doc, &inst); err != nil {
		t.Fatal(err)
	}
	return rs.Validate(inst)
}

// TestOSCALAssessmentResults validates the document against the model's
// constraints (testdata: the subset of the OSCAL 1.1.2 assessment-results
// model the document touches) and, where PORTCULLIS_OSCAL_SCHEMA names the
// official schema file (json/schema/oscal_assessment-results_schema.json
// of a usnistgov/OSCAL release), against that too. The machines this
// project is built on cannot fetch it (docs/posture.md).
func TestOSCALAssessmentResults(t *testing.T) {
	r := assessWith(t, baseConfig, basePolicy, nil)
	r.Checkpoint = &Checkpoint{Size: 42, Root: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", Note: "portcullis.local/audit\n42\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— sig\n"}
	r.SetTargets(Enterprise, nil)
	fw, _ := FrameworkByID("eu-ai-act")
	for _, f := range []*Framework{nil, &fw} {
		doc, err := r.OSCAL(f, "test")
		if err != nil {
			t.Fatal(err)
		}
		validate(t, "testdata/oscal-assessment-results-subset.schema.json", doc)
		if official := os.Getenv("PORTCULLIS_OSCAL_SCHEMA"); official != "" {
			validate(t, official, doc)
		}
		var got struct {
			AR struct {
				Results []struct {
					Findings []struct {
						Target struct {
							TargetID string                 `json:"target-id"`
							Status   struct{ State string } `json:"status"`
						} `json:"target"`
					} `json:"findings"`
				} `json:"results"`
			} `json:"assessment-results"`
		}
		json.Unmarshal(doc, &got)
		states := map[string]string{}
		for _, fd := range got.AR.Results[0].Findings {
			states[fd.Target.TargetID] = fd.Target.Status.State
		}
		// Against target E: service authentication reaches it,
		// governance does not.
		if states["service_authentication"] != "satisfied" || states["governance"] != "not-satisfied" {
			t.Errorf("findings %v", states)
		}
		if f != nil && states["art.-14"] == "" {
			t.Errorf("no finding for the framework's controls: %v", states)
		}
		// The schema is enforced: a state the model does not have, a
		// missing required field, a malformed UUID all fail.
		for _, bad := range []func(string) string{
			func(s string) string { return strings.Replace(s, `"state": "satisfied"`, `"state": "partial"`, 1) },
			func(s string) string { return strings.Replace(s, `"import-ap"`, `"import-plan"`, 1) },
			func(s string) string { return strings.Replace(s, `"methods": [`, `"methods": ["GUESS", `, 1) },
			func(s string) string { return strings.Replace(s, `"uuid": "`, `"uuid": "x`, 1) },
		} {
			if err := validateErr(t, "testdata/oscal-assessment-results-subset.schema.json", []byte(bad(string(doc)))); err == nil {
				t.Errorf("a broken document validated")
			}
		}
	}
}

func TestEvidenceSignature(t *testing.T) {
	skey, vkey, err := note.GenerateKey(nil, "portcullis.test/audit")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	doc := []byte(`{"assessment-results":{}}`)
	cp := &Checkpoint{Size: 7, Root: "root"}
	sig, err := SignEvidence(doc, cp, signer)
	if err != nil {
		t.Fatal(err)
	}
	text, err := VerifyEvidence(doc, sig, note.VerifierList(verifier))
	if err != nil || !strings.Contains(text, "checkpoint 7 root") {
		t.Fatalf("verify: %v %q", err, text)
	}
	if _, err := VerifyEvidence([]byte(`{"assessment-results":{"changed":1}}`), sig, note.VerifierList(verifier)); err == nil {
		t.Error("a changed document verified")
	}
	_, other, _ := note.GenerateKey(nil, "portcullis.test/audit")
	ov, _ := note.NewVerifier(other)
	if _, err := VerifyEvidence(doc, sig, note.VerifierList(ov)); err == nil {
		t.Error("another key verified")
	}
}
