package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/detect"
	"github.com/portcullis-dev/portcullis/internal/modeltriage"
	"github.com/portcullis-dev/portcullis/internal/token"
)

// agentProfile is what the evidence tools say about an agent: its roles,
// declared baseline and learned profile.
func (g *Gateway) agentProfile(agent string) (any, bool) {
	a, ok := g.cfg.Agent(agent)
	if !ok {
		return nil, false
	}
	out := map[string]any{"agent": agent, "roles": a.Roles}
	var declared []config.Baseline
	for _, b := range g.cfg.Detection.Baselines {
		if b.Agent == agent || b.Agent == "" && contains(a.Roles, b.Role) {
			declared = append(declared, b)
		}
	}
	out["declared_baselines"] = declared
	if p := g.detector.Profile("agent:" + agent); p != nil {
		out["learned"] = map[string]any{"observations": p.Observations, "tools": p.Tools, "upstreams": p.Upstreams,
			"calls_per_minute": map[string]float64{"mean": p.Rate.Mean, "sd": p.Rate.SD()}, "denied_share": p.Denials.Mean,
			"delegators": p.Delegators, "reference": p.Reference, "last_window_distance": p.LastDistance}
	}
	return out, true
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// modelTriage runs the model-backed triage of alert al (configured by
// detection.triage): the triage agent connects to this gateway with a
// short-lived token of its own, so that its queries are decided by policy
// and audited like any agent's.
func (g *Gateway) modelTriage(ctx context.Context, al detect.Alert, first detect.Report) (*modeltriage.Result, error) {
	tc := g.cfg.Detection.Triage
	key, err := tc.APIKey.Resolve(g.cfg.Dir(), g.openSecret)
	if err != nil {
		return nil, fmt.Errorf("detection.triage.api_key: %w", err)
	}
	tok, _, err := g.IssueToken(ctx, tc.Agent, 5*time.Minute)
	if err != nil {
		return nil, err
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "portcullis-triage", Version: "1"}, nil)
	s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: g.AgentURL(), MaxRetries: -1,
		HTTPClient: &http.Client{Transport: token.BearerTransport{Token: tok}}}, nil)
	if err != nil {
		return nil, fmt.Errorf("the triage agent's session: %w", err)
	}
	defer s.Close()
	return modeltriage.Run(ctx, modeltriage.Options{BaseURL: tc.BaseURL, APIKey: key, Model: tc.Model, MaxTurns: tc.MaxTurns,
		Actions: config.ResponseActions}, sessionTools{s}, al, first)
}

// sessionTools are the evidence tools as the triage agent's MCP session
// reaches them.
type sessionTools struct{ s *mcp.ClientSession }

func (t sessionTools) ListTools(ctx context.Context) ([]*mcp.Tool, error) {
	var out []*mcp.Tool
	for tool, err := range t.s.Tools(ctx, nil) {
		if err != nil {
			return nil, err
		}
		out = append(out, tool)
	}
	return out, nil
}

func (t sessionTools) CallTool(ctx context.Context, name string, args json.RawMessage) (string, bool, error) {
	var a map[string]any
	if len(args) > 0 {
		if err := json.Unmarshal(args, &a); err != nil {
			return "", false, fmt.Errorf("the tool's input is not a JSON object: %w", err)
		}
	}
	res, err := t.s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: a})
	if err != nil {
		return "", false, err
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	if b.Len() == 0 && res.StructuredContent != nil {
		j, _ := json.Marshal(res.StructuredContent)
		b.Write(j)
	}
	return b.String(), res.IsError, nil
}
