package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// tally counts a source's documents and benign segments at a threshold.
type tally struct {
	attacks, detected int
	benign, flagged   int // benign documents
	segs, segFlagged  int // segments of benign documents
}

func (t *tally) add(o tally) {
	t.attacks += o.attacks
	t.detected += o.detected
	t.benign += o.benign
	t.flagged += o.flagged
	t.segs += o.segs
	t.segFlagged += o.segFlagged
}

// tallies counts per source, and pooled under "all", at threshold t.
func tallies(js []judged, cal *screen.Model, t float32) map[string]tally {
	out := map[string]tally{}
	for i := range js {
		j := &js[i]
		var x tally
		hit := j.score(cal) >= float64(t)
		switch {
		case j.d.attack:
			x.attacks = 1
			if hit {
				x.detected = 1
			}
		default:
			x.benign = 1
			if hit {
				x.flagged = 1
			}
			for _, z := range j.segs {
				x.segs++
				if cal.Calibrate(z) >= t {
					x.segFlagged++
				}
			}
		}
		s := out[j.d.source]
		s.add(x)
		out[j.d.source] = s
		all := out["all"]
		all.add(x)
		out["all"] = all
	}
	return out
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// printHeldOut prints, per source and pooled, detection and false
// positives (documents and segments) at each threshold.
func printHeldOut(w io.Writer, title string, js []judged, cal *screen.Model, thresholds []float32) {
	fmt.Fprintln(w, title)
	for _, t := range thresholds {
		per := tallies(js, cal, t)
		fmt.Fprintf(w, "  threshold %.3f:\n", t)
		for _, s := range append(append([]string(nil), sources...), "all") {
			x := per[s]
			fmt.Fprintf(w, "    %-10s detected %4d/%-4d (%5.1f%%)  benign outputs flagged %3d/%-4d (%5.2f%%)  benign segments flagged %4d/%-5d (%5.2f%%)\n",
				s, x.detected, x.attacks, pct(x.detected, x.attacks), x.flagged, x.benign, pct(x.flagged, x.benign),
				x.segFlagged, x.segs, pct(x.segFlagged, x.segs))
		}
	}
}

// printCurve prints the operating curve as a Markdown table: per
// threshold, detection and benign outputs flagged for each held-out
// source, pooled, and the false-positive rate averaged over sources.
func printCurve(w io.Writer, js []judged, cal *screen.Model, thresholds []float32) {
	head := []string{"threshold"}
	for _, s := range sources {
		head = append(head, s+" detected", s+" FP")
	}
	head = append(head, "pooled detected", "pooled FP", "mean FP")
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, t := range thresholds {
		per := tallies(js, cal, t)
		row := []string{fmt.Sprintf("%.3f", t)}
		for _, s := range append(append([]string(nil), sources...), "all") {
			x := per[s]
			row = append(row, fmt.Sprintf("%.1f%%", pct(x.detected, x.attacks)), fmt.Sprintf("%.2f%%", pct(x.flagged, x.benign)))
		}
		row = append(row, fmt.Sprintf("%.2f%%", 100*meanFP(js, cal, t)))
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
}

// printErrors lists the misjudged documents at threshold t, and each
// source's highest-scoring benign outputs with their best segment.
func printErrors(w io.Writer, js []judged, cal *screen.Model, t float32) {
	for i := range js {
		j := &js[i]
		s := j.score(cal)
		if (s >= float64(t)) != j.d.attack {
			fmt.Fprintf(w, "  %s attack=%v score=%.3f: %.160q\n", j.d.source, j.d.attack, s, j.d.payload())
		}
	}
	for _, src := range sources {
		var benign []*judged
		for i := range js {
			if js[i].d.source == src && !js[i].d.attack {
				benign = append(benign, &js[i])
			}
		}
		slices.SortStableFunc(benign, func(a, b *judged) int { return cmp.Compare(b.score(cal), a.score(cal)) })
		fmt.Fprintf(w, "highest-scoring benign outputs of %s:\n", src)
		for _, j := range benign[:min(len(benign), 12)] {
			fmt.Fprintf(w, "  %.3f %.160q\n", j.score(cal), j.best)
		}
	}
}

// printROC prints, per source, the share of attacks detected at the
// thresholds that flag 1% and 5% of that source's own benign outputs: how
// well the held-out scores rank, whatever the threshold.
func printROC(w io.Writer, title string, js []judged, cal *screen.Model) {
	fmt.Fprintf(w, "%s detected at 1%% / 5%% of the source's benign outputs flagged:", title)
	for _, s := range sources {
		var benign, attacks []float64
		for i := range js {
			if js[i].d.source != s {
				continue
			}
			if js[i].d.attack {
				attacks = append(attacks, js[i].score(cal))
			} else {
				benign = append(benign, js[i].score(cal))
			}
		}
		slices.Sort(benign)
		fmt.Fprintf(w, " %s", s)
		for _, frac := range []float64{0.01, 0.05} {
			t := benign[len(benign)-1-int(frac*float64(len(benign)))]
			n := 0
			for _, a := range attacks {
				if a > t {
					n++
				}
			}
			fmt.Fprintf(w, " %.1f%%", pct(n, len(attacks)))
		}
	}
	fmt.Fprintln(w)
}
