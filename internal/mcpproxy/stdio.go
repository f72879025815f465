package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/portcullis-dev/portcullis/internal/audit"
)

// ServeStdio serves one agent over newline-delimited JSON-RPC on in/out (the
// `wrap` front). Each line's framing is checked before the MCP library sees
// it; a refused line is answered with a JSON-RPC error and audited. It
// returns when the agent closes its end or ctx ends.
func (p *Proxy) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	w := &lockedWriter{w: out}
	r := &checkedReader{p: p, src: bufio.NewReaderSize(in, 64<<10), out: w}
	t := &mcp.IOTransport{Reader: io.NopCloser(r), Writer: w, MaxLineLength: int(p.opts.Limits.MaxMessageBytes) + 1}
	ss, err := p.server.Connect(ctx, t, nil)
	if err != nil {
		return fmt.Errorf("serve stdio: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- ss.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		ss.Close()
		err = <-done
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, mcp.ErrConnectionClosed) {
		return fmt.Errorf("serve stdio: %w", err)
	}
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (l *lockedWriter) Close() error { return nil }

// checkedReader yields only lines that pass CheckMessage.
type checkedReader struct {
	p   *Proxy
	src *bufio.Reader
	out io.Writer
	buf bytes.Buffer
}

func (c *checkedReader) Read(b []byte) (int, error) {
	for c.buf.Len() == 0 {
		line, err := c.readLine()
		if len(bytes.TrimSpace(line)) > 0 {
			if cerr := c.check(line); cerr == nil {
				c.buf.Write(line)
				c.buf.WriteByte('\n')
			}
		}
		if err != nil {
			if c.buf.Len() > 0 {
				break
			}
			return 0, err
		}
	}
	return c.buf.Read(b)
}

// readLine reads one line, discarding (and refusing) lines over the limit
// without buffering them whole.
func (c *checkedReader) readLine() ([]byte, error) {
	max := int(c.p.opts.Limits.MaxMessageBytes)
	var line []byte
	for {
		chunk, err := c.src.ReadSlice('\n')
		if len(line)+len(chunk) > max {
			c.refuse(nil, ErrTooLarge)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = c.src.ReadSlice('\n')
			}
			return nil, err
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

func (c *checkedReader) check(line []byte) error {
	l := c.p.opts.Limits
	_, err := CheckMessage(line, MessageLimits{MaxBytes: l.MaxMessageBytes, MaxDepth: l.MaxJSONDepth, MaxBatch: l.MaxBatch})
	if err != nil {
		c.refuse(line, err)
	}
	return err
}

func (c *checkedReader) refuse(line []byte, cause error) {
	reason, code := refusal(cause)
	e := audit.NewEvent(audit.TypeProtocol, c.p.opts.Now())
	e.RequestID, e.Code, e.Detail = newRequestID(), reason, truncate(cause.Error(), 300)
	var env Envelope
	if line != nil && json.Unmarshal(line, &env) == nil {
		e.Method = truncate(env.Method, 100)
	}
	c.p.recordBackground(e)
	c.p.opts.Metrics.Refusal(reason)
	if len(env.ID) == 0 || len(env.ID) > 100 {
		return // a notification, or no readable id: nothing to answer
	}
	resp, _ := json.Marshal(refusalBody(env.ID, code, reason, e.RequestID))
	c.out.Write(append(resp, '\n'))
}
