package toolreg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/reason"
)

// Modes.
const (
	ModeTOFU   = "tofu"
	ModeStrict = "strict"
)

// Pin states.
const (
	Approved    = "approved"
	Quarantined = "quarantined"
	Rejected    = "rejected"
)

// Pin is one recorded definition of one tool of one upstream.
type Pin struct {
	Upstream   string
	Name       string
	Digest     string
	Definition json.RawMessage
	State      string
	Reason     string
	SeenAt     time.Time
	DecidedBy  string
}

// Store persists pins.
type Store interface {
	Pins(ctx context.Context, upstream string) ([]Pin, error)
	AddPin(ctx context.Context, p Pin) error
	SetPinState(ctx context.Context, upstream, name, digest, state, by string) error
	PinsChanged(ctx context.Context) (int64, error)
}

// definition is what the digest covers.
type definition struct {
	Name         string               `json:"name"`
	Title        string               `json:"title,omitempty"`
	Description  string               `json:"description,omitempty"`
	InputSchema  any                  `json:"inputSchema,omitempty"`
	OutputSchema any                  `json:"outputSchema,omitempty"`
	Annotations  *mcp.ToolAnnotations `json:"annotations,omitempty"`
}

// Digest returns the canonical definition of t and its "sha256:<hex>".
// Canonical: the covered fields only, object keys sorted (encoding/json
// sorts map keys), no insignificant whitespace.
func Digest(t *mcp.Tool) (string, json.RawMessage, error) {
	d := definition{Name: t.Name, Title: t.Title, Description: t.Description, InputSchema: t.InputSchema, OutputSchema: t.OutputSchema, Annotations: t.Annotations}
	b, err := json.Marshal(d)
	if err != nil {
		return "", nil, err
	}
	// Re-encode through a generic value so nested schema keys are sorted too.
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "", nil, err
	}
	if b, err = json.Marshal(v); err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), b, nil
}

// Event reports a pinning outcome for the audit log.
type Event struct {
	Upstream, Name, Digest string
	Code                   reason.Code // tool_pinned, tool_quarantined or tool_unpinnable
	Detail                 string
}

// TOFUWindow bounds trust on first use: what an upstream offers during the
// session in which it is first ever seen, within this long, is approved
// (servers register some tools only after the client initialised). Anything
// offered later, or after the upstream reconnected, is quarantined.
const TOFUWindow = time.Minute

// Registry decides which offered tools may be served.
type Registry struct {
	Store   Store
	Mode    string
	OnEvent func(Event)
	Now     func() time.Time
	// Manifests, when set for an upstream, decide alone which definitions
	// it may serve (pins are still recorded).
	Manifests map[string]*Manifest
	// Inspect finds what is suspicious in a definition, one line each
	// (others maps the tool names of other upstreams to their upstream,
	// for shadowing); any finding blocks automatic approval. The checks
	// are content screening's, injected by the gateway so that the
	// registry (and the store beneath it) do not link the detectors.
	// Required: Admit refuses to run without it.
	Inspect func(t *mcp.Tool, others map[string]string) []string

	mu    sync.Mutex
	first map[string]firstSight // upstreams first seen by this process with no pins
}

type firstSight struct {
	at      time.Time
	session int64
}

// Admit records the tools upstream offers and returns those that may be
// served (approved definitions only). Anything it cannot check is withheld.
// session identifies the upstream's connection (it changes when the
// upstream restarts).
func (r *Registry) Admit(ctx context.Context, upstream string, session int64, tools []*mcp.Tool) ([]*mcp.Tool, error) {
	if r.Inspect == nil {
		return nil, errors.New("admit tools: the registry has no definition checks (Inspect)")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pins, err := r.Store.Pins(ctx, upstream)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	if r.first == nil {
		r.first = map[string]firstSight{}
	}
	if len(pins) == 0 {
		if _, ok := r.first[upstream]; !ok {
			r.first[upstream] = firstSight{at: now, session: session}
		}
	}
	fs, seenFirst := r.first[upstream]
	firstSight := seenFirst && fs.session == session && now.Sub(fs.at) < TOFUWindow
	byKey := map[[2]string]Pin{}
	approvedDesc := map[string]string{} // description -> approved tool name
	for _, p := range pins {
		byKey[[2]string{p.Name, p.Digest}] = p
		if p.State == Approved {
			var d definition
			if json.Unmarshal(p.Definition, &d) == nil && d.Description != "" {
				approvedDesc[d.Description] = p.Name
			}
		}
	}
	names := map[string]bool{}
	for _, p := range pins {
		names[p.Name] = true
	}
	others, err := r.otherTools(ctx, upstream, tools)
	if err != nil {
		return nil, err
	}
	var served []*mcp.Tool
	manifest := r.Manifests[upstream]
	for _, t := range tools {
		digest, def, err := Digest(t)
		if err != nil {
			r.event(Event{Upstream: upstream, Name: t.Name, Code: reason.ToolUnpinnable, Detail: err.Error()})
			continue
		}
		if manifest != nil {
			if err := r.admitByManifest(ctx, manifest, byKey, t, digest, def, now); err != nil {
				return nil, err
			}
			if manifest.Tools[t.Name] == digest {
				served = append(served, t)
			}
			continue
		}
		if p, ok := byKey[[2]string{t.Name, digest}]; ok {
			if p.State == Approved {
				served = append(served, t)
			}
			continue
		}
		why := "new tool"
		switch {
		case names[t.Name]:
			why = "definition changed"
		case approvedDesc[t.Description] != "" && approvedDesc[t.Description] != t.Name:
			why = "reappeared under a new name (was " + approvedDesc[t.Description] + ")"
		}
		p := Pin{Upstream: upstream, Name: t.Name, Digest: digest, Definition: def, State: Quarantined, Reason: why, SeenAt: now.UTC()}
		findings := r.Inspect(t, others)
		switch {
		case len(findings) > 0:
			// Findings block automatic approval, first use or not.
			p.Reason = why + "; findings: " + strings.Join(findings, "; ")
		case firstSight && r.Mode == ModeTOFU:
			p.State, p.Reason, p.DecidedBy = Approved, "trust on first use", "tofu"
		}
		if err := r.Store.AddPin(ctx, p); err != nil {
			return nil, err
		}
		if p.State == Approved {
			served = append(served, t)
			r.event(Event{Upstream: upstream, Name: t.Name, Digest: digest, Code: reason.ToolPinned, Detail: p.Reason})
			continue
		}
		r.event(Event{Upstream: upstream, Name: t.Name, Digest: digest, Code: reason.ToolQuarantined, Detail: p.Reason})
	}
	return served, nil
}

// otherTools maps the names of other upstreams' recorded tools to their
// upstream (for shadowing checks). Names the upstream offers itself are
// left out.
func (r *Registry) otherTools(ctx context.Context, upstream string, own []*mcp.Tool) (map[string]string, error) {
	all, err := r.Store.Pins(ctx, "")
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, t := range own {
		mine[t.Name] = true
	}
	out := map[string]string{}
	for _, p := range all {
		if p.Upstream != upstream && !mine[p.Name] {
			out[p.Name] = p.Upstream
		}
	}
	return out, nil
}

// admitByManifest records a definition against a signed manifest: approved
// if the manifest lists its digest, quarantined otherwise.
func (r *Registry) admitByManifest(ctx context.Context, m *Manifest, byKey map[[2]string]Pin, t *mcp.Tool, digest string, def json.RawMessage, now time.Time) error {
	if _, ok := byKey[[2]string{t.Name, digest}]; ok {
		return nil
	}
	p := Pin{Upstream: m.Upstream, Name: t.Name, Digest: digest, Definition: def, State: Quarantined, Reason: "not in the signed manifest", SeenAt: now.UTC()}
	code := reason.ToolQuarantined
	if m.Tools[t.Name] == digest {
		p.State, p.Reason, p.DecidedBy, code = Approved, "signed manifest", "manifest", reason.ToolPinned
	}
	if err := r.Store.AddPin(ctx, p); err != nil {
		return err
	}
	r.event(Event{Upstream: m.Upstream, Name: t.Name, Digest: digest, Code: code, Detail: p.Reason})
	return nil
}

func (r *Registry) event(e Event) {
	if r.OnEvent != nil {
		r.OnEvent(e)
	}
}

// Watch calls changed whenever an operator changes a pin, until ctx ends:
// it looks every interval, and at once when kick fires (a fleet's change
// feed; nil: never).
func (r *Registry) Watch(ctx context.Context, every time.Duration, kick <-chan struct{}, changed func()) {
	last, _ := r.Store.PinsChanged(ctx)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-t.C:
		}
		if v, err := r.Store.PinsChanged(ctx); err == nil && v != last {
			last = v
			changed()
		}
	}
}

// Diff renders what changed between an approved definition and a newer one:
// description lines, schema lines and annotations, each as -/+ lines.
func Diff(old, next json.RawMessage) string {
	var a, b definition
	json.Unmarshal(old, &a)
	json.Unmarshal(next, &b)
	var out bytes.Buffer
	section := func(title, x, y string) {
		if x == y {
			return
		}
		fmt.Fprintf(&out, "%s:\n%s", title, lineDiff(x, y))
	}
	section("name", a.Name, b.Name)
	section("title", a.Title, b.Title)
	section("description", a.Description, b.Description)
	section("input schema", pretty(a.InputSchema), pretty(b.InputSchema))
	section("output schema", pretty(a.OutputSchema), pretty(b.OutputSchema))
	section("annotations", pretty(a.Annotations), pretty(b.Annotations))
	if out.Len() == 0 {
		return "no differences\n"
	}
	return out.String()
}

func pretty(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil || string(b) == "null" {
		return ""
	}
	return string(b)
}
