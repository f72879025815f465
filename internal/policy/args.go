package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/cedar-policy/cedar-go/types"
)

// Limits on what argument conversion accepts. The gateway enforces tighter
// size limits before this; these keep the converter safe on its own.
const (
	MaxArgumentDepth = 32
	MaxArgumentBytes = 1 << 20
)

// ErrArguments is returned by Arguments for input it refuses.
var ErrArguments = errors.New("arguments not convertible")

// Arguments converts a JSON object of tool arguments into a Cedar record.
// Integers within int64 become Long; other numbers become their decimal text
// as String (Cedar has no floating point); null becomes an empty record
// member being absent. An empty or null input is an empty record.
func Arguments(raw json.RawMessage) (types.Record, error) {
	if len(raw) > MaxArgumentBytes {
		return types.Record{}, fmt.Errorf("%w: %d bytes exceed %d", ErrArguments, len(raw), MaxArgumentBytes)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return types.Record{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return types.Record{}, fmt.Errorf("%w: %v", ErrArguments, err)
	}
	if dec.More() {
		return types.Record{}, fmt.Errorf("%w: trailing data", ErrArguments)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return types.Record{}, fmt.Errorf("%w: not an object", ErrArguments)
	}
	r, err := toRecord(obj, 1)
	if err != nil {
		return types.Record{}, err
	}
	return r, nil
}

func toRecord(m map[string]any, depth int) (types.Record, error) {
	if depth > MaxArgumentDepth {
		return types.Record{}, fmt.Errorf("%w: nesting exceeds %d", ErrArguments, MaxArgumentDepth)
	}
	rm := make(types.RecordMap, len(m))
	for k, v := range m {
		if v == nil {
			continue
		}
		cv, err := toValue(v, depth+1)
		if err != nil {
			return types.Record{}, err
		}
		rm[types.String(k)] = cv
	}
	return types.NewRecord(rm), nil
}

func toValue(v any, depth int) (types.Value, error) {
	if depth > MaxArgumentDepth {
		return nil, fmt.Errorf("%w: nesting exceeds %d", ErrArguments, MaxArgumentDepth)
	}
	switch x := v.(type) {
	case string:
		return types.String(x), nil
	case bool:
		return types.Boolean(x), nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return types.Long(i), nil
		}
		if f, err := x.Float64(); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return types.Long(int64(f)), nil
		}
		return types.String(x.String()), nil
	case []any:
		vals := make([]types.Value, 0, len(x))
		for _, e := range x {
			if e == nil {
				continue
			}
			cv, err := toValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			vals = append(vals, cv)
		}
		return types.NewSet(vals...), nil
	case map[string]any:
		return toRecord(x, depth)
	default:
		return nil, fmt.Errorf("%w: unexpected %T", ErrArguments, v)
	}
}
