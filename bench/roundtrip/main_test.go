package main

import (
	"slices"
	"testing"
)

// TestMedianSize: each ratio is the median of the runs' ratios, and the
// runs' own ratios are kept in run order (none for a single run).
func TestMedianSize(t *testing.T) {
	runs := []Size{
		{AddedP50Ratio: 1.6, CPURatio: 1.4, TPRatio: 0.9},
		{AddedP50Ratio: 1.4, CPURatio: 1.5, TPRatio: 0.8},
		{AddedP50Ratio: 1.5, CPURatio: 1.6, TPRatio: 0.85},
	}
	m := medianSize(runs)
	if m.AddedP50Ratio != 1.5 || m.CPURatio != 1.5 || m.TPRatio != 0.85 {
		t.Errorf("medians %.2f %.2f %.2f, want 1.50 1.50 0.85", m.AddedP50Ratio, m.CPURatio, m.TPRatio)
	}
	want := []Ratios{{1.6, 1.4, 0.9}, {1.4, 1.5, 0.8}, {1.5, 1.6, 0.85}}
	if !slices.Equal(m.Runs, want) {
		t.Errorf("runs %v, want %v", m.Runs, want)
	}
	if one := medianSize(runs[:1]); one.Runs != nil || one.AddedP50Ratio != 1.6 {
		t.Errorf("one run: %+v", one)
	}
}
