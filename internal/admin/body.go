package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// decodeBody reads a JSON object into v, refusing unknown fields and
// anything after the object. Its errors speak of the request, not of Go:
// which field, what was expected and what was sent.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	return bodyError(err)
}

func bodyError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var big *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return errors.New("body: empty, want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("body: the JSON ends early")
	case errors.As(err, &big):
		return fmt.Errorf("body: over %d bytes", big.Limit)
	case errors.As(err, &syn):
		return fmt.Errorf("body: not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("body: want a JSON object, got %s", typ.Value)
		}
		return fmt.Errorf("body: %s: want %s, got %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("body: unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Errorf("body: %v", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names a Go kind as JSON does.
func jsonKind(k string) string {
	switch k {
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	}
	return k
}
