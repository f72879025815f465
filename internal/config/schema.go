package config

import (
	"encoding/json"
	"reflect"
)

// SchemaID is the JSON Schema's identifier.
const SchemaID = "https://portcullis.dev/schema/config-v1.json"

// JSONSchema is a JSON Schema (2020-12) of the configuration file,
// generated from the Go types so that it cannot drift from what Parse
// accepts: every object closed to unknown fields, durations as strings,
// version required. Editors validate YAML against it
// (`# yaml-language-server: $schema=...`); docs/config.schema.json is it,
// checked by a test. Cross-field rules are Validate's alone.
func JSONSchema() ([]byte, error) {
	s := schemaOf(reflect.TypeOf(Config{}), 0)
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = SchemaID
	s["title"] = "Portcullis configuration"
	s["required"] = []string{"version"}
	props := s["properties"].(map[string]any)
	props["version"] = map[string]any{"const": 1}
	return json.MarshalIndent(s, "", "  ")
}

var durationType = reflect.TypeOf(Duration(0))

func schemaOf(t reflect.Type, depth int) map[string]any {
	if depth > 16 {
		return map[string]any{}
	}
	if t == durationType {
		return map[string]any{"type": "string", "pattern": `^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`,
			"description": "a duration such as 30s, 10m or 1h30m (Go's time.ParseDuration)"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), depth+1)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), depth+1)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), depth+1)}
	case reflect.Struct:
		props := map[string]any{}
		for i := range t.NumField() {
			f := t.Field(i)
			if name := tagName(f); name != "" {
				props[name] = schemaOf(f.Type, depth+1)
			}
		}
		return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	}
	return map[string]any{}
}
