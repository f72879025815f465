package audit

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/reason"
)

// TestEventEncoding: the subject's fields are the event's own (the
// encoding every stored event and export already has), in a fixed order.
func TestEventEncoding(t *testing.T) {
	who := Subject{Agent: "a", User: "u", Task: "t", Actors: []string{"b"}, Credential: "c", SessionID: "s", RequestID: "r", TraceID: "x", RemoteAddr: "127.0.0.1:1"}
	e := Decision(TypeDecision, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), who, "tools/call")
	e.Code, e.Target = reason.NoPermit, "fs__read"
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"time":"2026-01-02T03:04:05Z","type":"decision","outcome":"deny","agent":"a","user":"u","task":"t","act_chain":["b"],"credential_id":"c","session_id":"s","request_id":"r","trace_id":"x","remote_addr":"127.0.0.1:1","method":"tools/call","target":"fs__read","code":"no_permit"}`
	if string(b) != want {
		t.Errorf("encoding\n got %s\nwant %s", b, want)
	}
}

func TestFollowUpIsAttributedLikeItsDecision(t *testing.T) {
	d := Decision(TypeDecision, time.Now(), Subject{Agent: "a", User: "u", Task: "t", Actors: []string{"b"}, SessionID: "s", RequestID: "r", TraceID: "x"}, "tools/call")
	d.Action, d.Target, d.Upstream, d.Outcome = "call_tool", "fs__read", "fs", OutcomeAllow
	f := FollowUp(d, TypeScreening, reason.Redacted, time.Now())
	if f.Type != TypeScreening || f.Outcome != OutcomeInfo || f.Code != reason.Redacted {
		t.Errorf("follow-up: %s %s %s", f.Type, f.Outcome, f.Code)
	}
	if f.Agent != "a" || f.User != "u" || f.Task != "t" || f.SessionID != "s" || f.RequestID != "r" || f.TraceID != "x" ||
		f.Method != d.Method || f.Action != d.Action || f.Target != d.Target || f.Upstream != d.Upstream || len(f.Actors) != 1 {
		t.Errorf("follow-up not attributed like its decision: %+v", f)
	}
	f.Actors[0] = "changed"
	if d.Actors[0] != "b" {
		t.Error("a follow-up shares its decision's delegation path")
	}
}

// TestOCSFDetectionFinding: an alert exports as an OCSF Detection Finding
// with its severity and techniques; its resolution closes it.
func TestOCSFDetectionFinding(t *testing.T) {
	e := New(TypeAlert, OutcomeInfo, "unexpected_tool", time.Now(), Subject{Agent: "mailer", SessionID: "s1"})
	e.Alert, e.Severity, e.Techniques = "al-1", "high", []string{"AML.T0053"}
	o := OCSF(e)
	info, _ := o["finding_info"].(map[string]any)
	attacks, _ := o["attacks"].([]map[string]any)
	if o["class_uid"] != 2004 || o["activity_id"] != 1 || o["severity_id"] != 4 || info["uid"] != "al-1" || len(attacks) != 1 {
		t.Fatalf("alert as OCSF: %v", o)
	}
	s := New(TypeAlertState, OutcomeInfo, "resolved", time.Now(), Subject{})
	s.Alert = "al-1"
	if o := OCSF(s); o["class_uid"] != 2004 || o["activity_id"] != 3 {
		t.Fatalf("resolution as OCSF: %v", o)
	}
}
