package posture

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// OSCAL assessment results (OSCAL 1.1.2): the posture as evidence an
// auditor's tooling reads. One result: an observation per check (its
// evidence), a finding per capability (satisfied when it reaches its
// target, Foundation when none is set) and, with a framework, a finding
// per control. The audit checkpoint it was computed at is in the back
// matter.

// OSCALVersion is the OSCAL model version the document follows.
const OSCALVersion = "1.1.2"

// oscalNS is the namespace of Portcullis' own properties.
const oscalNS = "https://portcullis.dev/ns/oscal"

type oscalProp struct {
	Name  string `json:"name"`
	NS    string `json:"ns,omitempty"`
	Value string `json:"value"`
}

func prop(name, value string) oscalProp { return oscalProp{Name: name, NS: oscalNS, Value: value} }

// OSCAL builds the assessment-results document for r (fw: nil, or a
// framework whose controls get findings too).
func (r *Report) OSCAL(fw *Framework, version string) ([]byte, error) {
	now := r.Generated.UTC().Format(time.RFC3339)
	type obj = map[string]any
	var observations, findings []obj
	obsOf := map[string]string{} // capability/check -> observation uuid
	for _, c := range r.Capabilities {
		for _, ch := range c.Checks {
			id := uuid4()
			obsOf[c.ID+"/"+ch.ID] = id
			ev := ch.Evidence
			if ev == "" {
				ev = "(no evidence)"
			}
			observations = append(observations, obj{
				"uuid": id, "title": c.ID + "/" + ch.ID, "description": ch.Need,
				"props":   []oscalProp{prop("tier", ch.Tier.String()), prop("met", fmt.Sprint(ch.Met))},
				"methods": []string{"TEST"}, "types": []string{"control-objective"},
				"relevant-evidence": []obj{{"description": ev}}, "collected": now,
			})
		}
	}
	for _, c := range r.Capabilities {
		target := c.Target
		if target == None {
			target = Foundation
		}
		state := "satisfied"
		if c.Tier < target {
			state = "not-satisfied"
		}
		var rel []obj
		for _, ch := range c.Checks {
			rel = append(rel, obj{"observation-uuid": obsOf[c.ID+"/"+ch.ID]})
		}
		desc := fmt.Sprintf("%s reaches tier %s (target %s).", c.Name, c.Tier.Long(), target.Long())
		if len(c.Missing) > 0 {
			desc += " For the next tier: " + strings.Join(c.Missing, "; ") + "."
		}
		findings = append(findings, obj{
			"uuid": uuid4(), "title": c.Name, "description": desc,
			"props":                []oscalProp{prop("capability", c.ID), prop("tier", c.Tier.String()), prop("target-tier", target.String())},
			"target":               obj{"type": "objective-id", "target-id": token(c.ID), "status": obj{"state": state}},
			"related-observations": rel,
		})
	}
	controls := obj{"include-all": obj{}}
	if fw != nil {
		var inc []obj
		for _, cr := range r.Evaluate(*fw) {
			state := "not-satisfied"
			if cr.State == Satisfied {
				state = "satisfied"
			}
			var rel []obj
			for _, m := range append(append([]CheckRef(nil), cr.Met...), cr.Unmet...) {
				if id, ok := obsOf[m.Ref]; ok {
					rel = append(rel, obj{"observation-uuid": id})
				}
			}
			findings = append(findings, obj{
				"uuid": uuid4(), "title": cr.ID + " " + cr.Title,
				"description":          fmt.Sprintf("%s: %d of %d mapped checks met (%s).", cr.State, len(cr.Met), len(cr.Met)+len(cr.Unmet), MappingNote),
				"props":                []oscalProp{prop("framework", fw.ID), prop("control", cr.ID), prop("mapping-state", cr.State)},
				"target":               obj{"type": "statement-id", "target-id": token(cr.ID), "status": obj{"state": state}},
				"related-observations": rel,
			})
			inc = append(inc, obj{"control-id": token(cr.ID)})
		}
		controls = obj{"include-controls": inc}
	}
	result := obj{
		"uuid": uuid4(), "title": "Portcullis posture assessment",
		"description": "The tier each capability of the Zero Trust framework for agents reaches, computed from the live configuration, policy bundle and audit log.",
		"start":       now, "end": now,
		"props":             []oscalProp{prop("config-sha256", orDash(r.ConfigSHA256)), prop("policy-version", r.PolicyVersion)},
		"reviewed-controls": obj{"control-selections": []obj{controls}},
		"observations":      observations, "findings": findings,
	}
	if fw != nil {
		result["reviewed-controls"].(obj)["description"] = fw.Title + " (" + fw.Source + ")"
	}
	doc := obj{"assessment-results": obj{
		"uuid": uuid4(),
		"metadata": obj{"title": "Portcullis posture of " + orDash(r.Config), "last-modified": now, "version": version, "oscal-version": OSCALVersion,
			"props": []oscalProp{prop("generator", "portcullis posture")}},
		"import-ap": obj{"href": "#" + "portcullis-posture-checks"},
		"results":   []obj{result},
	}}
	if r.Checkpoint != nil {
		doc["assessment-results"].(obj)["back-matter"] = obj{"resources": []obj{{
			"uuid": uuid4(), "title": "Audit log checkpoint the assessment was computed at",
			"description": fmt.Sprintf("Signed checkpoint of the audit log: %d events, root %s, %s.", r.Checkpoint.Size, r.Checkpoint.Root, r.Checkpoint.Time.Format(time.RFC3339)),
			"props":       []oscalProp{prop("checkpoint-size", fmt.Sprint(r.Checkpoint.Size)), prop("checkpoint-root", r.Checkpoint.Root)},
			"base64":      obj{"filename": "checkpoint.note", "media-type": "text/plain", "value": b64(r.Checkpoint.Note)},
		}}}
	}
	return json.MarshalIndent(doc, "", "  ")
}

var nonToken = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// token makes an OSCAL token (a letter or underscore, then letters,
// digits, '.', '-', '_') of a control or capability ID.
func token(s string) string {
	t := strings.Trim(nonToken.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if t == "" || !(t[0] >= 'a' && t[0] <= 'z' || t[0] == '_') {
		t = "_" + t
	}
	return t
}

func uuid4() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// EvidenceStatement is the text a signature over an evidence document
// signs: its SHA-256 and the checkpoint it was computed at.
func EvidenceStatement(doc []byte, cp *Checkpoint) string {
	sum := sha256.Sum256(doc)
	s := "portcullis posture evidence\nsha256 " + hex.EncodeToString(sum[:]) + "\n"
	if cp != nil {
		s += fmt.Sprintf("checkpoint %d %s\n", cp.Size, cp.Root)
	}
	return s
}

// SignEvidence signs doc's statement as a C2SP signed note.
func SignEvidence(doc []byte, cp *Checkpoint, signer note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: EvidenceStatement(doc, cp)}, signer)
}

// VerifyEvidence checks sig (a signed note by one of verifiers) against
// doc: the signed SHA-256 must be doc's.
func VerifyEvidence(doc, sig []byte, verifiers note.Verifiers) (string, error) {
	n, err := note.Open(sig, verifiers)
	if err != nil {
		return "", fmt.Errorf("evidence signature: %w", err)
	}
	sum := sha256.Sum256(doc)
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 2 || lines[0] != "portcullis posture evidence" || lines[1] != "sha256 "+hex.EncodeToString(sum[:]) {
		return "", fmt.Errorf("evidence signature: signed for another document")
	}
	return n.Text, nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
