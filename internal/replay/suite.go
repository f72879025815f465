// Package replay runs assume-breach replays through a real gateway: an
// AgentDojo suite's recorded tool calls, issued by a client that plays a
// fully compromised agent, against an MCP upstream that serves the suite's
// tools with their recorded outputs (docs/evaluation.md).
package replay

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/screen"
)

// Tool is a suite tool as the model sees it.
type Tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
}

// Call is one recorded tool call and its output.
type Call struct {
	Function          string         `json:"function"`
	Args              map[string]any `json:"args"`
	Output            string         `json:"output"`
	InjectionVectors  []string       `json:"injection_vectors"`
	ContainsInjection bool           `json:"contains_injection_vector"`
	OutputCanaries    string         `json:"output_with_canaries"`
	ArgsCanaries      map[string]any `json:"args_with_canaries"`
}

// Task is a user task or an injection task.
type Task struct {
	ID          string `json:"id"`
	Prompt      string `json:"prompt"` // user tasks
	Goal        string `json:"goal"`   // injection tasks
	GroundTruth []Call `json:"ground_truth"`
}

// Pair is one security case: a user task under one injection task.
type Pair struct {
	UserTask      string            `json:"user_task_id"`
	InjectionTask string            `json:"injection_task_id"`
	Injections    map[string]string `json:"injections"` // vector -> attack text
	ReplayCheck   struct {
		InjectionAfter int `json:"injection_after_user_call_index"`
		// AllCallsAllowed is AgentDojo's own verdict when every call runs:
		// Security says whether the attacker's goal is then reached (in a
		// few pairs it is not, whatever the gateway does).
		AllCallsAllowed struct {
			Utility  bool `json:"utility"`
			Security bool `json:"security"`
		} `json:"all_calls_allowed"`
	} `json:"replay_check"`
}

// Suite is an AgentDojo suite directory (../shared/agentdojo/<suite>).
type Suite struct {
	Name           string
	Tools          []Tool
	UserTasks      map[string]*Task
	InjectionTasks map[string]*Task
	Pairs          []Pair
	Defaults       map[string]string // vector -> benign default text
}

// LoadSuite reads a suite directory. A path that is not a directory
// holding the suite's files, or a suite without tools or pairs, is
// refused with
// an error that says so.
func LoadSuite(dir string) (*Suite, error) {
	suiteFiles := []string{"tools.json", "user_tasks.jsonl", "injection_tasks.jsonl", "pairs.jsonl", "injection_vectors.json"}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s is not an AgentDojo suite directory (want a directory holding %s)", dir, strings.Join(suiteFiles, ", "))
	}
	var missing []string
	for _, f := range suiteFiles {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s is not an AgentDojo suite directory: %s missing", dir, strings.Join(missing, ", "))
	}
	s := &Suite{Name: filepath.Base(filepath.Clean(dir)), UserTasks: map[string]*Task{}, InjectionTasks: map[string]*Task{}, Defaults: map[string]string{}}
	b, err := os.ReadFile(filepath.Join(dir, "tools.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &s.Tools); err != nil {
		return nil, fmt.Errorf("tools.json: %w", err)
	}
	for _, f := range []struct {
		name string
		into map[string]*Task
	}{{"user_tasks.jsonl", s.UserTasks}, {"injection_tasks.jsonl", s.InjectionTasks}} {
		err := readJSONL(filepath.Join(dir, f.name), func(line []byte) error {
			t := &Task{}
			if err := json.Unmarshal(line, t); err != nil {
				return err
			}
			f.into[t.ID] = t
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	err = readJSONL(filepath.Join(dir, "pairs.jsonl"), func(line []byte) error {
		var p Pair
		if err := json.Unmarshal(line, &p); err != nil {
			return err
		}
		if s.UserTasks[p.UserTask] == nil || s.InjectionTasks[p.InjectionTask] == nil {
			return fmt.Errorf("pair names unknown tasks %s/%s", p.UserTask, p.InjectionTask)
		}
		s.Pairs = append(s.Pairs, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var vectors []struct{ ID, Default string }
	if b, err = os.ReadFile(filepath.Join(dir, "injection_vectors.json")); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &vectors); err != nil {
		return nil, fmt.Errorf("injection_vectors.json: %w", err)
	}
	for _, v := range vectors {
		s.Defaults[v.ID] = v.Default
	}
	if len(s.Pairs) == 0 || len(s.Tools) == 0 {
		return nil, fmt.Errorf("suite %s has %d tools and %d pairs: nothing to replay", dir, len(s.Tools), len(s.Pairs))
	}
	return s, nil
}

func readJSONL(path string, fn func([]byte) error) error {
	return screen.ForEachLine(path, 64<<20, func(_ int, line []byte) error { return fn(line) })
}

// UserTaskIDs are the user tasks in a stable order.
func (s *Suite) UserTaskIDs() []string {
	ids := make([]string, 0, len(s.UserTasks))
	for id := range s.UserTasks {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return taskLess(ids[i], ids[j]) })
	return ids
}

// taskLess orders "user_task_2" before "user_task_10".
func taskLess(a, b string) bool {
	na, nb := trailingNumber(a), trailingNumber(b)
	if na != nb && strings.TrimRight(a, "0123456789") == strings.TrimRight(b, "0123456789") {
		return na < nb
	}
	return a < b
}

func trailingNumber(s string) int {
	n, mul := 0, 1
	for i := len(s) - 1; i >= 0 && s[i] >= '0' && s[i] <= '9'; i-- {
		n += int(s[i]-'0') * mul
		mul *= 10
	}
	return n
}

// fill replaces the canary markers <CANARY---vector---> in s with the
// text injected at that vector (or its benign default).
func fill(s string, texts map[string]string, defaults map[string]string) string {
	for {
		i := strings.Index(s, "<CANARY---")
		if i < 0 {
			return s
		}
		j := strings.Index(s[i:], "--->")
		if j < 0 {
			return s
		}
		vec := s[i+len("<CANARY---") : i+j]
		text, ok := texts[vec]
		if !ok {
			text = defaults[vec]
		}
		s = s[:i] + text + s[i+j+len("--->"):]
	}
}

// fillValue applies fill to every string in an argument value.
func fillValue(v any, texts, defaults map[string]string) any {
	switch v := v.(type) {
	case string:
		return fill(v, texts, defaults)
	case []any:
		out := make([]any, len(v))
		for i := range v {
			out[i] = fillValue(v[i], texts, defaults)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k := range v {
			out[k] = fillValue(v[k], texts, defaults)
		}
		return out
	}
	return v
}

// step is one call the compromised agent makes, with the output the
// upstream returns for it.
type step struct {
	fn        string
	args      map[string]any
	output    string
	injection bool // a call of the attacker's task
	carrier   bool // the call whose output delivers the injection
}

// userSteps are a user task's calls with the given injections (nil: the
// benign defaults) filled into their arguments and outputs.
func (s *Suite) userSteps(t *Task, injections map[string]string) []step {
	var out []step
	for _, c := range t.GroundTruth {
		args, output := c.Args, c.Output
		if c.ArgsCanaries != nil {
			args = fillValue(c.ArgsCanaries, injections, s.Defaults).(map[string]any)
		}
		if c.OutputCanaries != "" {
			output = fill(c.OutputCanaries, injections, s.Defaults)
		}
		out = append(out, step{fn: c.Function, args: args, output: output})
	}
	return out
}

// pairSteps is the replay order of a pair: the user's calls up to and
// including the one whose output carries the injection, the attacker's
// calls, then the rest of the user's calls.
func (s *Suite) pairSteps(p Pair) []step {
	user := s.userSteps(s.UserTasks[p.UserTask], p.Injections)
	k := min(max(p.ReplayCheck.InjectionAfter, 0), len(user)-1)
	out := append([]step(nil), user[:k+1]...)
	if k >= 0 && k < len(out) {
		out[k].carrier = true
	}
	for _, c := range s.InjectionTasks[p.InjectionTask].GroundTruth {
		out = append(out, step{fn: c.Function, args: c.Args, output: c.Output, injection: true})
	}
	return append(out, user[k+1:]...)
}
