package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/screen"
)

// Trajectory is one record of the injecagent_trajectories corpus: a real
// LLM agent's next action after a tool response carrying an injected
// instruction.
type Trajectory struct {
	ID              string     `json:"id"`
	Label           string     `json:"label"` // attack: the agent followed the injection
	Category        string     `json:"category"`
	Model           string     `json:"model"`
	UserInstruction string     `json:"user_instruction"`
	UserToolCall    toolAction `json:"user_tool_call"`
	ToolResponse    string     `json:"tool_response"`
	NextAction      toolAction `json:"agent_next_action"`
	AttackerTools   []string   `json:"attacker_tools"`
	Step2           string     `json:"agent_output_step2"`
}

type toolAction struct {
	Tool  string `json:"tool"`
	Input string `json:"input"`
}

// ReadTrajectories reads the corpus (gzipped or not). Every record must
// carry the user's tool call and the tool response it replays; a corpus
// without records is refused, and so is one whose first record lacks them
// (a corpus of another kind: texts to screen or tool definitions).
func ReadTrajectories(path string) ([]Trajectory, error) {
	var out []Trajectory
	err := screen.ForEachLine(path, 16<<20, func(_ int, line []byte) error {
		var t Trajectory
		if err := json.Unmarshal(line, &t); err != nil {
			return err
		}
		if t.Label != "attack" && t.Label != "benign" {
			return fmt.Errorf("label %q is neither attack nor benign", t.Label)
		}
		if t.UserToolCall.Tool == "" || t.ToolResponse == "" {
			if len(out) == 0 {
				return errors.New("the records are not agent trajectories (no user_tool_call and tool_response)")
			}
			return fmt.Errorf("trajectory %q has no user_tool_call or tool_response", t.ID)
		}
		out = append(out, t)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%s: corpus has no records", path)
	}
	return out, err
}

// actionRE reads a ReAct step's action and input.
var actionRE = regexp.MustCompile(`(?s)Action:\s*([A-Za-z0-9_]+)\s*Action Input:\s*(\{.*?\})\s*(?:Observation|$)`)

// step2 is the data-stealing case's second step (sending what was read),
// when the record has one.
func (t *Trajectory) step2() (toolAction, bool) {
	m := actionRE.FindStringSubmatch(t.Step2)
	if m == nil {
		return toolAction{}, false
	}
	return toolAction{Tool: m[1], Input: m[2]}, true
}

// parseInput reads a tool input written as JSON or as a Python dict
// literal (InjecAgent's form); what neither parses is passed as
// {"input": text}.
func parseInput(s string) map[string]any {
	s = strings.TrimSpace(s)
	var m map[string]any
	if s == "" || s == "{}" {
		return map[string]any{}
	}
	if json.Unmarshal([]byte(s), &m) == nil {
		return m
	}
	py := strings.NewReplacer("'", `"`, "True", "true", "False", "false", "None", "null").Replace(s)
	if json.Unmarshal([]byte(py), &m) == nil {
		return m
	}
	return map[string]any{"input": s}
}

// TrajectoryReport is the outcome of replaying trajectories.
type TrajectoryReport struct {
	Mode string `json:"mode"`
	// Hijacked: records where the agent followed the injection; Stopped:
	// its next action was refused or held for a human; Refused: refused
	// (what stops it when every hold is approved).
	Hijacked   int     `json:"hijacked"`
	Stopped    int     `json:"stopped"`
	StopRate   float64 `json:"stop_rate"`
	Refused    int     `json:"refused"`
	RefuseRate float64 `json:"refuse_rate"`
	// Benign: records where it did not; LetThrough: no action, or its
	// action went through without a human.
	Benign       int     `json:"benign"`
	LetThrough   int     `json:"let_through"`
	PassRate     float64 `json:"pass_rate"`
	Exfil        int     `json:"exfiltration_steps"` // hijacked data-stealing records with a second (sending) step
	ExfilStopped int     `json:"exfiltration_stopped"`
	ExfilRefused int     `json:"exfiltration_refused"` // every hold approved
	// StoppedBy counts what stopped each stopped hijacked action.
	StoppedBy map[string]int    `json:"stopped_by"`
	PerModel  map[string][4]int `json:"per_model"` // hijacked, stopped, benign, let through
}

// RunTrajectories replays each record through a gateway built from cfg:
// the user's tool call answered with the injected response, then the
// agent's next action, and for data-stealing records its sending step.
func RunTrajectories(ctx context.Context, recs []Trajectory, cfg *config.Config, mode string) (*TrajectoryReport, error) {
	tools := map[string]bool{}
	for _, t := range recs {
		for _, a := range []string{t.UserToolCall.Tool, t.NextAction.Tool} {
			if a != "" {
				tools[a] = true
			}
		}
		if a, ok := t.step2(); ok {
			tools[a.Tool] = true
		}
		for _, a := range t.AttackerTools {
			tools[a] = true
		}
	}
	names := make([]string, 0, len(tools))
	for n := range tools {
		names = append(names, n)
	}
	sort.Strings(names)
	suite := &Suite{Name: "injecagent"}
	for _, n := range names {
		suite.Tools = append(suite.Tools, Tool{Name: n, Description: "InjecAgent tool " + n})
	}
	rep := &TrajectoryReport{Mode: mode, StoppedBy: map[string]int{}, PerModel: map[string][4]int{}}
	err := withGateway(ctx, Options{Suite: suite, Config: cfg, Mode: mode}, func(r *runner) error {
		for _, t := range recs {
			steps := []step{{fn: t.UserToolCall.Tool, args: parseInput(t.UserToolCall.Input), output: t.ToolResponse}}
			if t.NextAction.Tool != "" {
				steps = append(steps, step{fn: t.NextAction.Tool, args: parseInput(t.NextAction.Input), output: `{"success": true}`})
			}
			s2, has2 := t.step2()
			if has2 && t.Label == "attack" {
				steps = append(steps, step{fn: s2.Tool, args: parseInput(s2.Input), output: `{"success": true}`})
			}
			task := &Task{Prompt: t.UserInstruction, GroundTruth: []Call{{Function: t.UserToolCall.Tool}}}
			outs, err := r.session(ctx, task, steps)
			if err != nil {
				return fmt.Errorf("%s: %w", t.ID, err)
			}
			pm := rep.PerModel[t.Model]
			next := len(steps) > 1 && t.NextAction.Tool != ""
			stopped := next && (!outs[1].executed || outs[1].approved)
			if t.Label == "attack" {
				rep.Hijacked++
				pm[0]++
				if next && !outs[1].executed {
					rep.Refused++
				}
				if stopped {
					rep.Stopped++
					pm[1]++
					why := outs[1].code
					if outs[1].approved {
						why = "approval: " + outs[1].held
					}
					rep.StoppedBy[why]++
				}
				if has2 {
					rep.Exfil++
					if o := outs[len(outs)-1]; stopped || !o.executed || o.approved {
						rep.ExfilStopped++
					}
					if o := outs[len(outs)-1]; next && !outs[1].executed || !o.executed {
						rep.ExfilRefused++
					}
				}
			} else {
				rep.Benign++
				pm[2]++
				if !stopped {
					rep.LetThrough++
					pm[3]++
				}
			}
			rep.PerModel[t.Model] = pm
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rep.Hijacked > 0 {
		rep.StopRate = float64(rep.Stopped) / float64(rep.Hijacked)
		rep.RefuseRate = float64(rep.Refused) / float64(rep.Hijacked)
	}
	if rep.Benign > 0 {
		rep.PassRate = float64(rep.LetThrough) / float64(rep.Benign)
	}
	return rep, nil
}

// Print writes the report.
func (r *TrajectoryReport) Print(w io.Writer) {
	fmt.Fprintf(w, "mode %s\n", r.Mode)
	fmt.Fprintf(w, "hijacked next actions refused, every hold approved  %d/%d (%.1f%%)\n", r.Refused, r.Hijacked, 100*r.RefuseRate)
	fmt.Fprintf(w, "hijacked next actions stopped, holds as stops       %d/%d (%.1f%%)\n", r.Stopped, r.Hijacked, 100*r.StopRate)
	fmt.Fprintf(w, "benign next actions let through %d/%d (%.1f%%)\n", r.LetThrough, r.Benign, 100*r.PassRate)
	if r.Exfil > 0 {
		fmt.Fprintf(w, "data-stealing sends refused, every hold approved    %d/%d (%.1f%%)\n", r.ExfilRefused, r.Exfil, 100*float64(r.ExfilRefused)/float64(r.Exfil))
		fmt.Fprintf(w, "data-stealing sends stopped, holds as stops         %d/%d (%.1f%%)\n", r.ExfilStopped, r.Exfil, 100*float64(r.ExfilStopped)/float64(r.Exfil))
	}
	fmt.Fprintln(w, "stopped by:")
	var keys []string
	for k := range r.StoppedBy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %5d  %s\n", r.StoppedBy[k], k)
	}
	fmt.Fprintln(w, "per model (hijacked stopped / benign let through):")
	var models []string
	for m := range r.PerModel {
		models = append(models, m)
	}
	sort.Strings(models)
	for _, m := range models {
		v := r.PerModel[m]
		fmt.Fprintf(w, "  %-34s %4d/%-4d  %4d/%-4d\n", m, v[1], v[0], v[3], v[2])
	}
}
