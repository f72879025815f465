package policy

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

//go:embed schema.cedarschema
var schemaText []byte

//go:embed default.cedar
var defaultPolicy []byte

// Schema returns the Cedar schema text of Portcullis.
func Schema() []byte { return slices.Clone(schemaText) }

// DefaultSource is the policy `serve --dev` runs with.
func DefaultSource() Source {
	return Source{Name: "builtin/default.cedar", Data: slices.Clone(defaultPolicy)}
}

// Limits on policy sources.
const (
	MaxPolicyFileBytes = 1 << 20
	MaxPolicyFiles     = 1000
)

// Source is one policy document.
type Source struct {
	Name string
	Data []byte
}

// Set is a validated, immutable bundle of policies.
type Set struct {
	ps      *cedar.PolicySet
	version string
	meta    map[cedar.PolicyID]policyMeta
	forbids []cedar.PolicyID
	// sansApproval is ps without the forbids annotated @approval: what the
	// decision would be if a human approved.
	sansApproval *cedar.PolicySet
	idx          *index
	// provenance: some source mentions "roles" or "untrusted_arguments"
	// (argument provenance), however it is spelt.
	provenance bool
}

type policyMeta struct {
	id       string // @id annotation, or file:index
	reason   string // @reason annotation
	forbid   bool
	approval string // @approval annotation (forbids only): why a human must approve
}

// Version is the SHA-256 over the bundle's sources, as "sha256:<hex>".
func (s *Set) Version() string { return s.version }

// ReadsProvenance reports whether the policies read argument provenance
// (context.roles, context.untrusted_arguments): without it the gateway
// need not index what sessions read.
func (s *Set) ReadsProvenance() bool { return s.provenance }

// Len is the number of policies.
func (s *Set) Len() int { return len(s.meta) }

// ReadSources reads .cedar files from the given files and directories, in a
// deterministic order. A source is named by its path relative to the
// directory it was found in (or its base name for a file given directly),
// so a bundle's version does not depend on where it is installed.
func ReadSources(paths []string) ([]Source, error) {
	type file struct{ path, name string }
	var files []file
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read policies: %w", err)
		}
		if !st.IsDir() {
			files = append(files, file{p, filepath.Base(p)})
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".cedar") {
				rel, err := filepath.Rel(p, path)
				if err != nil {
					return err
				}
				files = append(files, file{path, filepath.ToSlash(rel)})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read policies: %w", err)
		}
	}
	if len(files) > MaxPolicyFiles {
		return nil, fmt.Errorf("read policies: %d files exceed %d", len(files), MaxPolicyFiles)
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	var out []Source
	for i, f := range files {
		if i > 0 && files[i-1].name == f.name {
			return nil, fmt.Errorf("read policies: two files named %s", f.name)
		}
		b, err := readBounded(f.path)
		if err != nil {
			return nil, err
		}
		out = append(out, Source{Name: f.name, Data: b})
	}
	return out, nil
}

func readBounded(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if st.Size() > MaxPolicyFileBytes {
		return nil, fmt.Errorf("read policy %s: exceeds %d bytes", path, MaxPolicyFileBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return b, nil
}

// Compile parses and validates sources into a Set. Every problem is reported.
func Compile(sources []Source) (*Set, error) {
	validator, err := newValidator()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	s := &Set{ps: cedar.NewPolicySet(), sansApproval: cedar.NewPolicySet(), meta: map[cedar.PolicyID]policyMeta{}, idx: &index{}}
	ids := map[string]string{}
	var errs []error
	for _, src := range sources {
		fmt.Fprintf(h, "%d:%s\n%d:", len(src.Name), src.Name, len(src.Data))
		h.Write(src.Data)
		// Any mention counts, whatever the access syntax (context.roles,
		// context["roles"]) or a comment: erring on the side of indexing.
		s.provenance = s.provenance || bytes.Contains(src.Data, []byte("roles")) || bytes.Contains(src.Data, []byte("untrusted_arguments"))
		list, err := cedar.NewPolicyListFromBytes(src.Name, src.Data)
		if err != nil {
			errs = append(errs, parseError(src.Name, err))
			continue
		}
		for i, p := range list {
			m := metaOf(src.Name, i, p)
			if prev, dup := ids[m.id]; dup {
				errs = append(errs, fmt.Errorf("%s: policy id %q already used in %s", src.Name, m.id, prev))
				continue
			}
			ids[m.id] = src.Name
			if err := validator.Policy(m.id, (*xast.Policy)(p.AST())); err != nil {
				errs = append(errs, fmt.Errorf("validate %s (policy %q): %w", src.Name, m.id, err))
				continue
			}
			pid := cedar.PolicyID(m.id)
			s.ps.Add(pid, p)
			s.idx.add(pid, p, m.approval != "")
			if m.approval == "" {
				s.sansApproval.Add(pid, p)
			}
			s.meta[pid] = m
			if m.forbid {
				s.forbids = append(s.forbids, pid)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.version = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return s, nil
}

func metaOf(file string, i int, p *cedar.Policy) policyMeta {
	a := p.Annotations()
	m := policyMeta{id: string(a["id"]), reason: string(a["reason"]), forbid: p.Effect() == cedar.Forbid}
	if v, ok := a["approval"]; ok && m.forbid {
		m.approval = string(v)
		if m.approval == "" {
			m.approval = "policy requires human approval"
		}
	}
	if m.id == "" {
		m.id = fmt.Sprintf("%s#%d", filepath.Base(file), i)
	}
	return m
}

func newValidator() (*validate.Validator, error) {
	var s schema.Schema
	if err := s.UnmarshalCedar(schemaText); err != nil {
		return nil, fmt.Errorf("parse embedded schema: %w", err)
	}
	r, err := s.Resolve()
	if err != nil {
		return nil, fmt.Errorf("resolve embedded schema: %w", err)
	}
	return validate.New(r, validate.WithPermissive()), nil
}

// text returns the Cedar text of the policy with the given ID.
func (s *Set) text(id string) string {
	for pid, m := range s.meta {
		if m.id == id {
			p := s.ps.Get(pid)
			if p == nil {
				return ""
			}
			pos := p.Position()
			return fmt.Sprintf("  (%s:%d)\n%s", pos.Filename, pos.Line, string(p.MarshalCedar()))
		}
	}
	return ""
}

// parseError places a Cedar parse error in the file it is in: the parser
// names every input "<input>", so "parser error: parse error at
// <input>:2:1 ..." becomes "bad.cedar:2:1: ...".
func parseError(name string, err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "<input>:"); i >= 0 {
		if m := cedarPosition.FindStringSubmatch(msg[i:]); m != nil {
			return fmt.Errorf("%s:%s:%s: %s (at %s)", name, m[1], m[2], m[4], m[3])
		}
		return fmt.Errorf("%s%s", name, strings.TrimPrefix(msg[i:], "<input>"))
	}
	return fmt.Errorf("parse %s: %w", name, err)
}

// cedarPosition is the form of cedar-go's parse errors after the input's
// name: ":LINE:COL TOKEN: MESSAGE".
var cedarPosition = regexp.MustCompile(`^<input>:(\d+):(\d+) (.*?): (.*)$`)
