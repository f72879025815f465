package memory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/store"
)

// The knowledge graph of the reference memory server
// (@modelcontextprotocol/server-memory): entities with observations, and
// relations between them. Here each entity, observation and relation is
// an element of its own, with its own provenance, hash and state.

// Entity is a node of the graph.
type Entity struct {
	Name         string   `json:"name" jsonschema:"The name of the entity"`
	EntityType   string   `json:"entityType" jsonschema:"The type of the entity"`
	Observations []string `json:"observations" jsonschema:"An array of observation contents associated with the entity"`
}

// Relation is an edge of the graph.
type Relation struct {
	From         string `json:"from" jsonschema:"The name of the entity where the relation starts"`
	To           string `json:"to" jsonschema:"The name of the entity where the relation ends"`
	RelationType string `json:"relationType" jsonschema:"The type of the relation"`
}

// Graph is a view of the graph.
type Graph struct {
	Entities  []Entity   `json:"entities"`
	Relations []Relation `json:"relations"`
}

type entityBody struct {
	Name       string `json:"name"`
	EntityType string `json:"entityType"`
}

type observationBody struct {
	Entity  string `json:"entity"`
	Content string `json:"content"`
}

type valueBody struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func entityKey(name string) string { return "entity:" + name }

func observationKey(entity, content string) string {
	h := sha256.Sum256([]byte(content))
	return "observation:" + entity + ":" + hex.EncodeToString(h[:12])
}

func relationKey(r Relation) string {
	return "relation:" + r.From + "\x1f" + r.RelationType + "\x1f" + r.To
}

func valueKey(k string) string { return "value:" + k }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("memory: " + err.Error()) // strings and structs of strings only
	}
	return b
}

// Bounds of one call.
const (
	maxItems   = 500
	maxText    = 16 << 10
	maxNameLen = 512
)

func checkText(what, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s: longer than %d bytes", what, limit)
	}
	return nil
}

// graph reads the verified, active graph of scope.
func (s *Service) graph(ctx context.Context, c Caller, scope string) (*Graph, []store.MemoryElement, error) {
	es, err := s.verified(ctx, c, []string{scope}, KindEntity, KindObservation, KindRelation)
	if err != nil {
		return nil, nil, err
	}
	g := &Graph{Entities: []Entity{}, Relations: []Relation{}}
	index := map[string]int{}
	var used []store.MemoryElement
	for _, e := range es {
		if e.Kind != KindEntity {
			continue
		}
		var b entityBody
		if json.Unmarshal(e.Body, &b) != nil {
			continue
		}
		index[b.Name] = len(g.Entities)
		g.Entities = append(g.Entities, Entity{Name: b.Name, EntityType: b.EntityType, Observations: []string{}})
		used = append(used, e)
	}
	for _, e := range es {
		switch e.Kind {
		case KindObservation:
			var b observationBody
			if json.Unmarshal(e.Body, &b) != nil {
				continue
			}
			if i, ok := index[b.Entity]; ok { // an entity quarantined hides its observations
				g.Entities[i].Observations = append(g.Entities[i].Observations, b.Content)
				used = append(used, e)
			}
		case KindRelation:
			var r Relation
			if json.Unmarshal(e.Body, &r) != nil {
				continue
			}
			g.Relations = append(g.Relations, r)
			used = append(used, e)
		}
	}
	return g, used, nil
}

// CreateEntities creates the entities whose names are new, with their
// observations; it returns those it created (as the reference does).
func (s *Service) CreateEntities(ctx context.Context, c Caller, scope string, entities []Entity) ([]Entity, int, error) {
	if len(entities) > maxItems {
		return nil, 0, fmt.Errorf("at most %d entities a call", maxItems)
	}
	g, _, err := s.graph(ctx, c, scope)
	if err != nil {
		return nil, 0, err
	}
	var cs []change
	created := []Entity{}
	seen := map[string]bool{}
	for _, e := range g.Entities {
		seen[e.Name] = true
	}
	for _, e := range entities {
		if e.Name == "" || len(e.Name) > maxNameLen || len(e.EntityType) > maxNameLen {
			return nil, 0, fmt.Errorf("entity names and types are 1 to %d bytes", maxNameLen)
		}
		if seen[e.Name] {
			continue
		}
		seen[e.Name] = true
		if e.Observations == nil {
			e.Observations = []string{}
		}
		cs = append(cs, change{key: entityKey(e.Name), kind: KindEntity, body: mustJSON(entityBody{e.Name, e.EntityType}), state: Active, text: e.Name + "\n" + e.EntityType})
		for _, o := range e.Observations {
			if err := checkText("an observation", o, maxText); err != nil {
				return nil, 0, err
			}
			cs = append(cs, change{key: observationKey(e.Name, o), kind: KindObservation, body: mustJSON(observationBody{e.Name, o}), state: Active, text: o})
		}
		created = append(created, e)
	}
	q, err := s.write(ctx, c, "", scope, cs, reason.MemoryWritten, fmt.Sprintf("create_entities: %d entities", len(created)))
	return created, q, err
}

// CreateRelations creates the relations that are new.
func (s *Service) CreateRelations(ctx context.Context, c Caller, scope string, relations []Relation) ([]Relation, int, error) {
	if len(relations) > maxItems {
		return nil, 0, fmt.Errorf("at most %d relations a call", maxItems)
	}
	g, _, err := s.graph(ctx, c, scope)
	if err != nil {
		return nil, 0, err
	}
	created := []Relation{}
	var cs []change
	for _, r := range relations {
		if len(r.From) > maxNameLen || len(r.To) > maxNameLen || len(r.RelationType) > maxNameLen {
			return nil, 0, fmt.Errorf("relation names are at most %d bytes", maxNameLen)
		}
		if slices.Contains(g.Relations, r) || slices.Contains(created, r) {
			continue
		}
		created = append(created, r)
		cs = append(cs, change{key: relationKey(r), kind: KindRelation, body: mustJSON(r), state: Active, text: r.From + " " + r.RelationType + " " + r.To})
	}
	q, err := s.write(ctx, c, "", scope, cs, reason.MemoryWritten, fmt.Sprintf("create_relations: %d relations", len(created)))
	return created, q, err
}

// ObservationAdd is add_observations' input item.
type ObservationAdd struct {
	EntityName string   `json:"entityName" jsonschema:"The name of the entity to add the observations to"`
	Contents   []string `json:"contents" jsonschema:"An array of observation contents to add"`
}

// ObservationAdded is add_observations' result item.
type ObservationAdded struct {
	EntityName        string   `json:"entityName"`
	AddedObservations []string `json:"addedObservations"`
}

// AddObservations adds the new observations to existing entities.
func (s *Service) AddObservations(ctx context.Context, c Caller, scope string, adds []ObservationAdd) ([]ObservationAdded, int, error) {
	if len(adds) > maxItems {
		return nil, 0, fmt.Errorf("at most %d items a call", maxItems)
	}
	g, _, err := s.graph(ctx, c, scope)
	if err != nil {
		return nil, 0, err
	}
	var out []ObservationAdded
	var cs []change
	for _, a := range adds {
		i := slices.IndexFunc(g.Entities, func(e Entity) bool { return e.Name == a.EntityName })
		if i < 0 {
			return nil, 0, fmt.Errorf("Entity with name %s not found", a.EntityName)
		}
		r := ObservationAdded{EntityName: a.EntityName, AddedObservations: []string{}}
		for _, o := range a.Contents {
			if err := checkText("an observation", o, maxText); err != nil {
				return nil, 0, err
			}
			if slices.Contains(g.Entities[i].Observations, o) {
				continue
			}
			g.Entities[i].Observations = append(g.Entities[i].Observations, o)
			r.AddedObservations = append(r.AddedObservations, o)
			cs = append(cs, change{key: observationKey(a.EntityName, o), kind: KindObservation, body: mustJSON(observationBody{a.EntityName, o}), state: Active, text: o})
		}
		out = append(out, r)
	}
	q, err := s.write(ctx, c, "", scope, cs, reason.MemoryWritten, fmt.Sprintf("add_observations: %d observations", len(cs)))
	return out, q, err
}

// DeleteEntities deletes entities, their observations and the relations
// that name them.
func (s *Service) DeleteEntities(ctx context.Context, c Caller, scope string, names []string) error {
	es, err := s.o.Store.MemoryElements(ctx, store.MemoryQuery{Scopes: []string{scope}, Current: true})
	if err != nil {
		return err
	}
	var cs []change
	for _, e := range es {
		if e.State == Deleted || e.State == Purged {
			continue
		}
		var hit bool
		switch e.Kind {
		case KindEntity:
			var b entityBody
			hit = json.Unmarshal(e.Body, &b) == nil && slices.Contains(names, b.Name)
		case KindObservation:
			var b observationBody
			hit = json.Unmarshal(e.Body, &b) == nil && slices.Contains(names, b.Entity)
		case KindRelation:
			var r Relation
			hit = json.Unmarshal(e.Body, &r) == nil && (slices.Contains(names, r.From) || slices.Contains(names, r.To))
		}
		if hit {
			cs = append(cs, change{key: e.Key, kind: e.Kind, body: s.carry(ctx, c, e), state: Deleted})
		}
	}
	_, err = s.write(ctx, c, "", scope, cs, reason.MemoryDeleted, fmt.Sprintf("delete_entities: %d elements", len(cs)))
	return err
}

// ObservationDelete is delete_observations' input item.
type ObservationDelete struct {
	EntityName   string   `json:"entityName" jsonschema:"The name of the entity containing the observations"`
	Observations []string `json:"observations" jsonschema:"An array of observations to delete"`
}

// DeleteObservations deletes observations.
func (s *Service) DeleteObservations(ctx context.Context, c Caller, scope string, dels []ObservationDelete) error {
	var cs []change
	for _, d := range dels {
		for _, o := range d.Observations {
			cs = append(cs, change{key: observationKey(d.EntityName, o), kind: KindObservation, body: mustJSON(observationBody{d.EntityName, o}), state: Deleted})
		}
	}
	cs, err := s.existing(ctx, scope, cs)
	if err != nil {
		return err
	}
	_, err = s.write(ctx, c, "", scope, cs, reason.MemoryDeleted, fmt.Sprintf("delete_observations: %d observations", len(cs)))
	return err
}

// DeleteRelations deletes relations.
func (s *Service) DeleteRelations(ctx context.Context, c Caller, scope string, rs []Relation) error {
	var cs []change
	for _, r := range rs {
		cs = append(cs, change{key: relationKey(r), kind: KindRelation, body: mustJSON(r), state: Deleted})
	}
	cs, err := s.existing(ctx, scope, cs)
	if err != nil {
		return err
	}
	_, err = s.write(ctx, c, "", scope, cs, reason.MemoryDeleted, fmt.Sprintf("delete_relations: %d relations", len(cs)))
	return err
}

// existing keeps the deletions of elements that exist and are not
// deleted already.
func (s *Service) existing(ctx context.Context, scope string, cs []change) ([]change, error) {
	if len(cs) > maxItems*10 {
		return nil, fmt.Errorf("at most %d deletions a call", maxItems*10)
	}
	es, err := s.o.Store.MemoryElements(ctx, store.MemoryQuery{Scopes: []string{scope}, Current: true})
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, e := range es {
		if e.State == Active || e.State == Quarantined {
			live[e.Key] = true
		}
	}
	var out []change
	for _, ch := range cs {
		if live[ch.key] {
			live[ch.key] = false
			out = append(out, ch)
		}
	}
	return out, nil
}

// ReadGraph returns the whole graph of scope, and the labels of what it
// holds.
func (s *Service) ReadGraph(ctx context.Context, c Caller, scope string) (*Graph, []string, error) {
	g, used, err := s.graph(ctx, c, scope)
	if err != nil {
		return nil, nil, err
	}
	return g, labelsOf(used), nil
}

// SearchNodes returns the entities whose name, type or an observation
// contains query (case-insensitive), and the relations touching them.
func (s *Service) SearchNodes(ctx context.Context, c Caller, scope, query string) (*Graph, []string, error) {
	q := strings.ToLower(query)
	return s.filter(ctx, c, scope, func(e Entity) bool {
		if strings.Contains(strings.ToLower(e.Name), q) || strings.Contains(strings.ToLower(e.EntityType), q) {
			return true
		}
		return slices.ContainsFunc(e.Observations, func(o string) bool { return strings.Contains(strings.ToLower(o), q) })
	})
}

// OpenNodes returns the named entities and the relations touching them.
func (s *Service) OpenNodes(ctx context.Context, c Caller, scope string, names []string) (*Graph, []string, error) {
	return s.filter(ctx, c, scope, func(e Entity) bool { return slices.Contains(names, e.Name) })
}

func (s *Service) filter(ctx context.Context, c Caller, scope string, keep func(Entity) bool) (*Graph, []string, error) {
	g, used, err := s.graph(ctx, c, scope)
	if err != nil {
		return nil, nil, err
	}
	out := &Graph{Entities: []Entity{}, Relations: []Relation{}}
	names := map[string]bool{}
	for _, e := range g.Entities {
		if keep(e) {
			out.Entities = append(out.Entities, e)
			names[e.Name] = true
		}
	}
	for _, r := range g.Relations {
		if names[r.From] || names[r.To] {
			out.Relations = append(out.Relations, r)
		}
	}
	// The labels of what is returned: the kept entities' elements and
	// the relations returned.
	var kept []store.MemoryElement
	for _, e := range used {
		switch e.Kind {
		case KindEntity:
			var b entityBody
			if json.Unmarshal(e.Body, &b) == nil && names[b.Name] {
				kept = append(kept, e)
			}
		case KindObservation:
			var b observationBody
			if json.Unmarshal(e.Body, &b) == nil && names[b.Entity] {
				kept = append(kept, e)
			}
		case KindRelation:
			var r Relation
			if json.Unmarshal(e.Body, &r) == nil && (names[r.From] || names[r.To]) {
				kept = append(kept, e)
			}
		}
	}
	return out, labelsOf(kept), nil
}

// SetValue sets a key's value (a note).
func (s *Service) SetValue(ctx context.Context, c Caller, scope, key, value string) (int, error) {
	if key == "" || len(key) > maxNameLen {
		return 0, fmt.Errorf("keys are 1 to %d bytes", maxNameLen)
	}
	if err := checkText("a value", value, maxText); err != nil {
		return 0, err
	}
	return s.write(ctx, c, "", scope, []change{{key: valueKey(key), kind: KindValue, body: mustJSON(valueBody{key, value}), state: Active, text: key + "\n" + value}},
		reason.MemoryWritten, "memory_set")
}

// Value is a key and its value.
type Value struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Values returns the values of scope whose key has prefix.
func (s *Service) Values(ctx context.Context, c Caller, scope, prefix string) ([]Value, []string, error) {
	es, err := s.verified(ctx, c, []string{scope}, KindValue)
	if err != nil {
		return nil, nil, err
	}
	out := []Value{}
	var used []store.MemoryElement
	for _, e := range es {
		var b valueBody
		if json.Unmarshal(e.Body, &b) != nil || !strings.HasPrefix(b.Key, prefix) {
			continue
		}
		out = append(out, Value(b))
		used = append(used, e)
	}
	return out, labelsOf(used), nil
}

// DeleteValue deletes a key.
func (s *Service) DeleteValue(ctx context.Context, c Caller, scope, key string) error {
	cs, err := s.existing(ctx, scope, []change{{key: valueKey(key), kind: KindValue, state: Deleted}})
	if err != nil {
		return err
	}
	_, err = s.write(ctx, c, "", scope, cs, reason.MemoryDeleted, "memory_delete")
	return err
}
