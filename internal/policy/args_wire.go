package policy

import (
	"fmt"
	"math"
	"strconv"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/portcullis-dev/portcullis/internal/wire"
)

// WireArguments is Arguments for the value at sp of b, a message the wire
// parser accepted (strict JSON: valid UTF-8, no duplicate keys), read in
// place: the gateway's hot path, without decoding the arguments a second
// time into Go values first. It converts exactly as Arguments does
// (TestWireArgumentsAsArguments, FuzzWireArguments). b must be what the
// wire parser accepted: on malformed JSON the walk stops early instead of
// failing (use Arguments for anything else).
func WireArguments(b []byte, sp wire.Span) (types.Record, error) {
	if sp.End-sp.Start > MaxArgumentBytes {
		return types.Record{}, fmt.Errorf("%w: %d bytes exceed %d", ErrArguments, sp.End-sp.Start, MaxArgumentBytes)
	}
	if sp.Empty() || string(sp.In(b)) == "null" {
		return types.Record{}, nil
	}
	if !wire.IsObject(b, sp) {
		return types.Record{}, fmt.Errorf("%w: not an object", ErrArguments)
	}
	return wireRecord(b, sp, 1)
}

func wireRecord(b []byte, sp wire.Span, depth int) (types.Record, error) {
	if depth > MaxArgumentDepth {
		return types.Record{}, fmt.Errorf("%w: nesting exceeds %d", ErrArguments, MaxArgumentDepth)
	}
	rm := types.RecordMap{}
	var err error
	wire.Members(b, sp, func(k, v wire.Span) bool {
		if b[v.Start] == 'n' { // null: the member is absent
			return true
		}
		var cv types.Value
		if cv, err = wireValue(b, v, depth+1); err != nil {
			return false
		}
		key, _ := wire.String(b, k)
		rm[types.String(key)] = cv
		return true
	})
	if err != nil {
		return types.Record{}, err
	}
	return types.NewRecord(rm), nil
}

func wireValue(b []byte, sp wire.Span, depth int) (types.Value, error) {
	if depth > MaxArgumentDepth {
		return nil, fmt.Errorf("%w: nesting exceeds %d", ErrArguments, MaxArgumentDepth)
	}
	switch b[sp.Start] {
	case '"':
		s, _ := wire.String(b, sp)
		return types.String(s), nil
	case 't':
		return types.Boolean(true), nil
	case 'f':
		return types.Boolean(false), nil
	case '{':
		return wireRecord(b, sp, depth)
	case '[':
		var vals []types.Value
		var err error
		wire.Elements(b, sp, func(e wire.Span) bool {
			if b[e.Start] == 'n' {
				return true
			}
			var cv types.Value
			if cv, err = wireValue(b, e, depth+1); err != nil {
				return false
			}
			vals = append(vals, cv)
			return true
		})
		if err != nil {
			return nil, err
		}
		return types.NewSet(vals...), nil
	}
	// A number, as json.Number converts it.
	text := string(sp.In(b))
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		return types.Long(i), nil
	}
	if f, err := strconv.ParseFloat(text, 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return types.Long(int64(f)), nil
	}
	return types.String(text), nil
}
