package ops

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/toolreg"
)

// ListPins returns the recorded tool definitions (of one upstream, or all).
func (o *Ops) ListPins(ctx context.Context, upstream string) ([]toolreg.Pin, error) {
	return o.st.Pins(ctx, upstream)
}

// PinDiff shows how the quarantined definition of a tool differs from its
// last approved one.
func (o *Ops) PinDiff(ctx context.Context, upstream, name string) (string, error) {
	pins, err := o.ListPins(ctx, upstream)
	if err != nil {
		return "", err
	}
	var approved, pending *toolreg.Pin
	for i := range pins {
		p := &pins[i]
		if p.Name != name {
			continue
		}
		switch p.State {
		case toolreg.Approved:
			approved = p
		case toolreg.Quarantined:
			pending = p
		}
	}
	if pending == nil {
		return "", fmt.Errorf("no quarantined definition of %s/%s", upstream, name)
	}
	head := fmt.Sprintf("%s/%s: %s\nquarantined %s (%s)\n", upstream, name, pending.Reason, pending.Digest, pending.SeenAt.Format(time.RFC3339))
	if approved == nil {
		return head + "no approved definition to compare with; the whole definition is new:\n" + toolreg.Diff(nil, pending.Definition), nil
	}
	return head + fmt.Sprintf("approved    %s\n\n", approved.Digest) + toolreg.Diff(approved.Definition, pending.Definition), nil
}

// DecidePin approves or rejects the quarantined definition of a tool and
// audits it. A running gateway serves an approved one within a second.
func (o *Ops) DecidePin(ctx context.Context, upstream, name, state, by string) (toolreg.Pin, error) {
	return o.DecidePinDigest(ctx, upstream, name, "", state, by)
}

// DecidePinDigest is DecidePin for the quarantined definition with digest
// (empty: the newest quarantined one): a reviewer decides the definition
// they saw, never one that arrived since.
func (o *Ops) DecidePinDigest(ctx context.Context, upstream, name, digest, state, by string) (toolreg.Pin, error) {
	if err := attributed(by); err != nil {
		return toolreg.Pin{}, err
	}
	if state != toolreg.Approved && state != toolreg.Rejected {
		return toolreg.Pin{}, errors.New("decision must be approved or rejected")
	}
	st := o.st
	pins, err := st.Pins(ctx, upstream)
	if err != nil {
		return toolreg.Pin{}, err
	}
	var target *toolreg.Pin
	for i := range pins {
		if pins[i].Name == name && pins[i].State == toolreg.Quarantined && (digest == "" || pins[i].Digest == digest) {
			target = &pins[i]
		}
	}
	if target == nil {
		if digest != "" {
			return toolreg.Pin{}, fmt.Errorf("no quarantined definition of %s/%s with digest %s (decided already, or another version)", upstream, name, digest)
		}
		return toolreg.Pin{}, fmt.Errorf("no quarantined definition of %s/%s", upstream, name)
	}
	code := reason.ToolRejected
	if state == toolreg.Approved {
		code = reason.ToolApproved
	}
	e := audit.New(audit.TypeSupplyChain, audit.OutcomeInfo, code, time.Now(), audit.Subject{})
	e.Upstream, e.Target = upstream, name
	e.Detail = fmt.Sprintf("%s by %s (%s)", target.Digest, by, target.Reason)
	if err := audit.WriteNow(ctx, st, e); err != nil {
		return toolreg.Pin{}, err
	}
	if err := st.SetPinState(ctx, upstream, name, target.Digest, state, by); err != nil {
		return toolreg.Pin{}, err
	}
	target.State, target.DecidedBy = state, by
	return *target, nil
}

// BOM builds the AI-BOM (CycloneDX 1.6) of the configured upstreams and
// their recorded tool definitions.
func (o *Ops) BOM(ctx context.Context, version string) (map[string]any, error) {
	pins, err := o.ListPins(ctx, "")
	if err != nil {
		return nil, err
	}
	var ups []toolreg.BOMUpstream
	for _, u := range o.cfg.Upstreams {
		b := toolreg.BOMUpstream{Name: u.Name}
		switch {
		case u.Stdio != nil:
			b.Transport, b.Command, b.Args = "stdio", u.Stdio.Command, u.Stdio.Args
		case u.HTTP != nil:
			b.Transport, b.URL = "http", u.HTTP.URL
		default:
			b.Transport = "builtin:" + u.Builtin
		}
		for _, p := range pins {
			if p.Upstream == u.Name {
				b.Pins = append(b.Pins, p)
			}
		}
		ups = append(ups, b)
	}
	return toolreg.BOM(version, ups, time.Now()), nil
}

// BuildManifest makes the manifest of an upstream from the configuration
// (its launch spec) and its approved tool definitions.
func (o *Ops) BuildManifest(ctx context.Context, upstream string) (*toolreg.Manifest, error) {
	var up *config.Upstream
	for i := range o.cfg.Upstreams {
		if o.cfg.Upstreams[i].Name == upstream {
			up = &o.cfg.Upstreams[i]
		}
	}
	if up == nil {
		return nil, fmt.Errorf("no upstream %q in the configuration", upstream)
	}
	pins, err := o.ListPins(ctx, upstream)
	if err != nil {
		return nil, err
	}
	m := &toolreg.Manifest{Upstream: upstream, Launch: toolreg.LaunchDigest(up.LaunchSpec()), Tools: map[string]string{}}
	for _, p := range pins {
		if p.State == toolreg.Approved {
			m.Tools[p.Name] = p.Digest // the latest approved definition wins
		}
	}
	if len(m.Tools) == 0 {
		return nil, fmt.Errorf("upstream %q has no approved tool definitions to sign", upstream)
	}
	return m, nil
}

// LoadManifests verifies the manifest of every upstream. It returns the
// valid ones and, for each upstream refused, why.
func LoadManifests(cfg *config.Config) (map[string]*toolreg.Manifest, map[string]error, error) {
	var keys []string
	for _, k := range cfg.Manifests.TrustedKeys {
		b, err := cfg.ReadFile(k, 4096)
		if err != nil {
			return nil, nil, fmt.Errorf("manifest trusted key: %w", err)
		}
		keys = append(keys, string(b))
	}
	ok, refused := map[string]*toolreg.Manifest{}, map[string]error{}
	for _, u := range cfg.Upstreams {
		msg, err := cfg.ReadFile(filepath.Join(cfg.Manifests.Dir, u.Name+".manifest"), toolreg.MaxManifestBytes)
		if err != nil {
			refused[u.Name] = err
			continue
		}
		m, err := toolreg.OpenManifest(msg, keys)
		switch {
		case err != nil:
			refused[u.Name] = err
		case m.Upstream != u.Name:
			refused[u.Name] = fmt.Errorf("manifest is for upstream %q", m.Upstream)
		case m.Launch != toolreg.LaunchDigest(u.LaunchSpec()):
			refused[u.Name] = errors.New("the configured launch differs from the signed one")
		default:
			ok[u.Name] = m
		}
	}
	return ok, refused, nil
}
