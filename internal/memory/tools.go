package memory

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP face of the service: the reference memory server's tools (same
// names, same argument and result shapes, each with an optional `scope`),
// and memory_set, memory_get and memory_delete for values.

// MetaQuarantined is the result _meta key telling a writer how many of
// its elements were quarantined.
const MetaQuarantined = "dev.portcullis/quarantined"

type scoped struct {
	Scope string `json:"scope,omitempty" jsonschema:"where: user (default when acting for a user), agent (default otherwise), task, session, or shared:NAME"`
}

// Arguments of the graph tools (the reference's, with scope).
type (
	createEntitiesArgs struct {
		Entities []Entity `json:"entities"`
		scoped
	}
	createRelationsArgs struct {
		Relations []Relation `json:"relations"`
		scoped
	}
	addObservationsArgs struct {
		Observations []ObservationAdd `json:"observations"`
		scoped
	}
	deleteEntitiesArgs struct {
		EntityNames []string `json:"entityNames" jsonschema:"An array of entity names to delete"`
		scoped
	}
	deleteObservationsArgs struct {
		Deletions []ObservationDelete `json:"deletions"`
		scoped
	}
	deleteRelationsArgs struct {
		Relations []Relation `json:"relations" jsonschema:"An array of relations to delete"`
		scoped
	}
	searchArgs struct {
		Query string `json:"query" jsonschema:"The search query to match against entity names, types, and observation content"`
		scoped
	}
	openArgs struct {
		Names []string `json:"names" jsonschema:"An array of entity names to retrieve"`
		scoped
	}
	setArgs struct {
		Key   string `json:"key" jsonschema:"the key"`
		Value string `json:"value" jsonschema:"the value (text)"`
		scoped
	}
	getArgs struct {
		Key    string `json:"key,omitempty" jsonschema:"one key (empty: every key with prefix)"`
		Prefix string `json:"prefix,omitempty" jsonschema:"keys starting with this (with key empty)"`
		scoped
	}
	deleteValueArgs struct {
		Key string `json:"key" jsonschema:"the key"`
		scoped
	}
)

// Results.
type (
	entitiesResult struct {
		Entities []Entity `json:"entities"`
	}
	relationsResult struct {
		Relations []Relation `json:"relations"`
	}
	observationsResult struct {
		Results []ObservationAdded `json:"results"`
	}
	done struct {
		Success bool   `json:"success"`
		Message string `json:"message"`
	}
	valuesResult struct {
		Values []Value `json:"values"`
	}
)

// errNoCaller: a call that did not come through the gateway.
var errNoCaller = errors.New("memory: no caller: the built-in memory is reached through the Portcullis gateway only")

func callerOf(req *mcp.CallToolRequest) (Caller, error) {
	var c Caller
	if req == nil || req.Params == nil || req.Params.Meta == nil {
		return c, errNoCaller
	}
	raw, ok := req.Params.Meta[MetaCaller]
	if !ok {
		return c, errNoCaller
	}
	b, err := json.Marshal(raw)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Agent == "" {
		return Caller{}, errNoCaller
	}
	return c, nil
}

func meta(labels []string, quarantined int) *mcp.CallToolResult {
	m := mcp.Meta{}
	if len(labels) > 0 {
		m[MetaLabels] = labels
	}
	if quarantined > 0 {
		m[MetaQuarantined] = quarantined
	}
	if len(m) == 0 {
		return nil
	}
	return &mcp.CallToolResult{Meta: m}
}

// tool registers a handler that resolves the caller and the scope first.
func tool[In, Out any](srv *mcp.Server, s *Service, t *mcp.Tool, scope func(In) string,
	h func(ctx context.Context, c Caller, scope string, in In) (*mcp.CallToolResult, Out, error)) {
	in, err := jsonschema.For[In](nil)
	if err != nil {
		panic("memory: " + err.Error()) // the argument types are this package's
	}
	arrays(in)
	t.InputSchema = in
	mcp.AddTool(srv, t, func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
		var zero Out
		c, err := callerOf(req)
		if err != nil {
			return nil, zero, err
		}
		sc, err := s.Scope(c, scope(in))
		if err != nil {
			return nil, zero, err
		}
		return h(ctx, c, sc, in)
	})
}

// Server builds the MCP server of the service.
func (s *Service) Server() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "portcullis-memory", Version: "1"}, nil)
	no, yes := false, true
	write := &mcp.ToolAnnotations{OpenWorldHint: &no}
	del := &mcp.ToolAnnotations{DestructiveHint: &yes, IdempotentHint: true, OpenWorldHint: &no}
	read := &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: &no}

	tool(srv, s, &mcp.Tool{Name: "create_entities", Title: "Create Entities", Description: "Create multiple new entities in the knowledge graph", Annotations: write},
		func(a createEntitiesArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a createEntitiesArgs) (*mcp.CallToolResult, entitiesResult, error) {
			out, q, err := s.CreateEntities(ctx, c, sc, a.Entities)
			return meta(nil, q), entitiesResult{out}, err
		})
	tool(srv, s, &mcp.Tool{Name: "create_relations", Title: "Create Relations", Description: "Create multiple new relations between entities in the knowledge graph. Relations should be in active voice", Annotations: write},
		func(a createRelationsArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a createRelationsArgs) (*mcp.CallToolResult, relationsResult, error) {
			out, q, err := s.CreateRelations(ctx, c, sc, a.Relations)
			return meta(nil, q), relationsResult{out}, err
		})
	tool(srv, s, &mcp.Tool{Name: "add_observations", Title: "Add Observations", Description: "Add new observations to existing entities in the knowledge graph", Annotations: write},
		func(a addObservationsArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a addObservationsArgs) (*mcp.CallToolResult, observationsResult, error) {
			out, q, err := s.AddObservations(ctx, c, sc, a.Observations)
			return meta(nil, q), observationsResult{out}, err
		})
	tool(srv, s, &mcp.Tool{Name: "delete_entities", Title: "Delete Entities", Description: "Delete multiple entities and their associated relations from the knowledge graph", Annotations: del},
		func(a deleteEntitiesArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a deleteEntitiesArgs) (*mcp.CallToolResult, done, error) {
			err := s.DeleteEntities(ctx, c, sc, a.EntityNames)
			return nil, done{err == nil, "Entities deleted successfully"}, err
		})
	tool(srv, s, &mcp.Tool{Name: "delete_observations", Title: "Delete Observations", Description: "Delete specific observations from entities in the knowledge graph", Annotations: del},
		func(a deleteObservationsArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a deleteObservationsArgs) (*mcp.CallToolResult, done, error) {
			err := s.DeleteObservations(ctx, c, sc, a.Deletions)
			return nil, done{err == nil, "Observations deleted successfully"}, err
		})
	tool(srv, s, &mcp.Tool{Name: "delete_relations", Title: "Delete Relations", Description: "Delete multiple relations from the knowledge graph", Annotations: del},
		func(a deleteRelationsArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a deleteRelationsArgs) (*mcp.CallToolResult, done, error) {
			err := s.DeleteRelations(ctx, c, sc, a.Relations)
			return nil, done{err == nil, "Relations deleted successfully"}, err
		})
	tool(srv, s, &mcp.Tool{Name: "read_graph", Title: "Read Graph", Description: "Read the entire knowledge graph", Annotations: read},
		func(a scoped) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, _ scoped) (*mcp.CallToolResult, Graph, error) {
			g, labels, err := s.ReadGraph(ctx, c, sc)
			if err != nil {
				return nil, Graph{}, err
			}
			return meta(labels, 0), *g, nil
		})
	tool(srv, s, &mcp.Tool{Name: "search_nodes", Title: "Search Nodes", Description: "Search for nodes in the knowledge graph based on a query", Annotations: read},
		func(a searchArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a searchArgs) (*mcp.CallToolResult, Graph, error) {
			g, labels, err := s.SearchNodes(ctx, c, sc, a.Query)
			if err != nil {
				return nil, Graph{}, err
			}
			return meta(labels, 0), *g, nil
		})
	tool(srv, s, &mcp.Tool{Name: "open_nodes", Title: "Open Nodes", Description: "Open specific nodes in the knowledge graph by their names", Annotations: read},
		func(a openArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a openArgs) (*mcp.CallToolResult, Graph, error) {
			g, labels, err := s.OpenNodes(ctx, c, sc, a.Names)
			if err != nil {
				return nil, Graph{}, err
			}
			return meta(labels, 0), *g, nil
		})
	tool(srv, s, &mcp.Tool{Name: "memory_set", Title: "Set a value", Description: "Remember a value under a key (a note), replacing the key's value", Annotations: write},
		func(a setArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a setArgs) (*mcp.CallToolResult, Value, error) {
			q, err := s.SetValue(ctx, c, sc, a.Key, a.Value)
			return meta(nil, q), Value{Key: a.Key, Value: a.Value}, err
		})
	tool(srv, s, &mcp.Tool{Name: "memory_get", Title: "Get values", Description: "Recall the value of a key, or of every key with a prefix", Annotations: read},
		func(a getArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a getArgs) (*mcp.CallToolResult, valuesResult, error) {
			vs, labels, err := s.Values(ctx, c, sc, a.Prefix+a.Key)
			if err != nil {
				return nil, valuesResult{}, err
			}
			if a.Key != "" {
				exact := vs[:0]
				for _, v := range vs {
					if v.Key == a.Key {
						exact = append(exact, v)
					}
				}
				vs = exact
			}
			return meta(labels, 0), valuesResult{vs}, nil
		})
	tool(srv, s, &mcp.Tool{Name: "memory_delete", Title: "Delete a value", Description: "Forget a key", Annotations: del},
		func(a deleteValueArgs) string { return a.Scope },
		func(ctx context.Context, c Caller, sc string, a deleteValueArgs) (*mcp.CallToolResult, done, error) {
			err := s.DeleteValue(ctx, c, sc, a.Key)
			return nil, done{err == nil, "Value deleted successfully"}, err
		})
	return srv
}

// arrays makes the inferred schema's lists plain arrays (Go's nil slices
// infer "null or array"; the reference server's arguments are arrays).
func arrays(s *jsonschema.Schema) {
	if s == nil {
		return
	}
	if len(s.Types) == 2 && s.Types[0] == "null" && s.Types[1] == "array" {
		s.Type, s.Types = "array", nil
	}
	for _, p := range s.Properties {
		arrays(p)
	}
	arrays(s.Items)
}
