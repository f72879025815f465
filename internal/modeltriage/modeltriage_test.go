package modeltriage

import (
	"strings"
	"testing"
)

func TestParseReport(t *testing.T) {
	actions := []string{"flag", "read_only", "terminate_session"}
	r, err := parseReport("After looking: ```json\n{\"verdict\":\"suspicious\",\"confidence\":0.6,\"recommended\":\"read_only\",\"reasons\":[\"x\"]}\n```", actions)
	if err != nil || r.Verdict != "suspicious" || r.Recommended != "read_only" || r.Confidence != 0.6 {
		t.Fatalf("%+v %v", r, err)
	}
	for name, text := range map[string]string{
		"no json":                        "it looks fine",
		"verdict":                        `{"verdict":"fine","confidence":0.5,"recommended":"flag"}`,
		"confidence":                     `{"verdict":"benign","confidence":7,"recommended":"flag"}`,
		"an action it may not recommend": `{"verdict":"malicious","confidence":0.9,"recommended":"delete_everything"}`,
		"broken":                         `{"verdict":`,
	} {
		if _, err := parseReport(text, actions); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	long, err := parseReport(`{"verdict":"benign","confidence":0.1,"recommended":"flag","reasons":["`+strings.Repeat("é", 400)+`"]}`, actions)
	if err != nil || len(long.Reasons[0]) > 510 {
		t.Fatalf("a long reason: %v %d", err, len(long.Reasons[0]))
	}
}
