package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
)

// ErrEventTooLarge is returned by EventReader.Next for an event over its limit.
var ErrEventTooLarge = errors.New("server-sent event too large")

// Event is one server-sent event (HTML Living Standard, "event stream
// interpretation"), as MCP's streamable HTTP transport uses it.
type Event struct {
	ID   string
	Type string // "message" when not given
	Data []byte
	// Retry is the reconnection time the stream asked for, in ms (-1: none).
	Retry int
	// HasID reports whether the event set an id (possibly empty).
	HasID bool
}

// EventReader reads events from a text/event-stream body.
type EventReader struct {
	*eventBuffers
	max int
}

// eventBuffers are an event reader's buffers: the read buffer, and where
// a line longer than it is assembled.
type eventBuffers struct {
	r    *bufio.Reader
	long []byte
}

// maxKeptLong bounds the long-line buffer a released reader keeps.
const maxKeptLong = 64 << 10

// readers recycles the buffers of event readers: an answer is read per
// relayed call, and fresh buffers each time showed in allocation
// profiles. What an event keeps (its data, id, type) is copied out of
// them, once.
var readers = sync.Pool{New: func() any { return &eventBuffers{r: bufio.NewReaderSize(nil, 4096)} }}

// NewEventReader reads events of at most max bytes (MaxSSEEvent if max <= 0).
// Call Release when done with it.
func NewEventReader(r io.Reader, max int) *EventReader {
	if max <= 0 {
		max = MaxSSEEvent
	}
	b := readers.Get().(*eventBuffers)
	b.r.Reset(r)
	return &EventReader{eventBuffers: b, max: max}
}

// Release returns the reader's buffers for reuse; the reader must not be
// used after.
func (er *EventReader) Release() {
	if b := er.eventBuffers; b != nil {
		b.r.Reset(nil)
		if cap(b.long) > maxKeptLong {
			b.long = nil
		}
		readers.Put(b)
		er.eventBuffers = nil
	}
}

// Next returns the next event with data, or an event that only sets an id
// or retry (a priming event). At the end of the stream it returns io.EOF.
func (er *EventReader) Next() (Event, error) {
	ev := Event{Retry: -1}
	var data []byte
	hasData, any := false, false
	for {
		line, err := er.line()
		if err != nil {
			if errors.Is(err, io.EOF) && any {
				break // a final event cut short by the end of the stream still counts
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if any {
				break
			}
			continue
		}
		if line[0] == ':' {
			continue // comment
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			n := len(data) + len(value)
			if hasData {
				n++ // the line break between data lines
			}
			if n > er.max {
				return Event{}, ErrEventTooLarge
			}
			if hasData {
				data = append(data, '\n')
			} else {
				// Most events have one data line: one allocation of its size.
				data = make([]byte, 0, len(value))
			}
			data = append(data, value...)
			hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.ID, ev.HasID = string(value), true
			}
		case "event":
			ev.Type = string(value)
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
				ev.Retry = n
			}
		}
		any = true
	}
	if ev.Type == "" {
		ev.Type = "message"
	}
	ev.Data = data
	return ev, nil
}

// line reads one line without its terminator (CRLF, LF or CR), bounded.
// The line is in the reader's buffers: valid until the next call.
func (er *EventReader) line() ([]byte, error) {
	if cap(er.long) > maxKeptLong {
		er.long = nil // a long-lived stream does not keep its largest line's buffer
	}
	chunk, err := er.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) { // longer than the read buffer
		out := append(er.long[:0], chunk...)
		for errors.Is(err, bufio.ErrBufferFull) {
			chunk, err = er.r.ReadSlice('\n')
			if len(out)+len(chunk) > er.max+64 {
				return nil, ErrEventTooLarge
			}
			out = append(out, chunk...)
		}
		er.long = out
		chunk = out
	}
	if len(chunk) > er.max+64 {
		return nil, ErrEventTooLarge
	}
	if err != nil {
		if len(chunk) == 0 {
			return nil, err
		}
		return bytes.TrimRight(chunk, "\r"), nil
	}
	return bytes.TrimRight(chunk[:len(chunk)-1], "\r"), nil
}

// AppendEvent appends one event carrying data (an id if not empty). Data
// with line breaks is split over several data fields, as the format
// requires.
func AppendEvent(dst []byte, id string, data []byte) []byte {
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	dst = append(dst, "event: message\n"...)
	f := newByteFinder(data, '\n', '\r')
	line := 0 // where the next line starts
	for {
		i := f.next(line)
		if i >= len(data) {
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[line:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		line = i + 1
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data[line:]...)
	return append(dst, "\n\n"...)
}
