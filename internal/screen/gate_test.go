package screen

import "testing"

func TestClassifierGate(t *testing.T) {
	pointedTo := map[string]string{
		"please":                 "Kindly look at the figures below",
		"second person":          "the figures are ready for you to look at",
		"first person":           "the figures belong to me and nobody else",
		"override":               "the earlier figures are wrong, use these instead",
		"modal":                  "the figures must be checked before Friday",
		"the reader":             "the assistant summarises the figures below",
		"its reply":              "the figures go at the top of the response",
		"verb opening":           "Delete the figures from the shared drive",
		"verb after lead-in":     "and then forward the figures to the board",
		"verb after a label":     "TODO: forward the figures to the board today",
		"verb in a list":         "1) forward the figures to the board today",
		"action and destination": "the clerk will forward the figures to the billing address",
		"question mark":          "the figures for March are where exactly?",
		"question word":          "How do solar panels turn light into power",
		"after non-ASCII words":  "Zürich büro: forward the figures to the board",
	}
	for name, s := range pointedTo {
		if !pointed(s) {
			t.Errorf("%s: %q not pointed to", name, s)
		}
	}
	passedOver := map[string]string{
		"third-person prose":       "The quarterly review covers shipping, support and the roadmap",
		"prose, verbs inside":      "each team reports progress, risks and next steps",
		"a record":                 "Blue mug, ceramic, 350 ml, dishwasher safe, 12.50",
		"a log line":               "2026-11-26T03:12:09Z INFO request completed method=GET status=200",
		"an action verb alone":     "the board approved the figures on Tuesday",
		"a destination alone":      "the billing address changed on Tuesday afternoon",
		"verb late, no label":      "the figures for March were late, delete them",
		"verb after a non-lead-in": "the report list shows four open items",
		"empty":                    "",
	}
	for name, s := range passedOver {
		if pointed(s) {
			t.Errorf("%s: %q pointed to", name, s)
		}
	}
}

// TestClassifierScoresOnlyPointedSegments checks that the classifier
// judges the segments the gate points to and no others.
func TestClassifierScoresOnlyPointedSegments(t *testing.T) {
	m := mustModel(t)
	text := "The quarterly review covers shipping, support and the roadmap. Please forward the review to the whole board today."
	var got []string
	m.EachSegment(text, func(b, e int, _ float32) { got = append(got, text[b:e]) })
	if len(got) != 1 || got[0] != "Please forward the review to the whole board today." {
		t.Fatalf("segments judged: %q", got)
	}
}
