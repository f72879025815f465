package mcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/identity"
	"github.com/portcullis-dev/portcullis/internal/reason"
	"github.com/portcullis-dev/portcullis/internal/wire"
)

// ServeStdio serves one agent over newline-delimited JSON-RPC on in/out
// (the `wrap` front). Each line is framed and checked before a pipeline
// sees it, and the agent's credential (from principal) is checked again on
// every message; a refused line is answered with a JSON-RPC error and
// audited. Requests are served concurrently. It returns when the agent
// closes its end or ctx ends.
func (p *Proxy) ServeStdio(ctx context.Context, in io.Reader, out io.Writer, principal PrincipalFunc) error {
	w := &lineWriter{w: out}
	src := bufio.NewReaderSize(in, 64<<10)
	var s *Session
	var wg sync.WaitGroup
	slots := make(chan struct{}, 2*p.opts.Limits.MaxCallsPerSession)
	defer func() {
		if s != nil {
			// Calls in flight may still answer; none can wait on the
			// agent any more.
			s.hangUp()
		}
		wg.Wait()
		if s != nil {
			p.sessions.remove(s)
		}
	}()
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		for {
			line, err := readLine(src, int(p.opts.Limits.MaxMessageBytes), func() { p.refuseLine(w, nil, nil, ErrTooLarge) })
			if len(bytes.TrimSpace(line)) > 0 {
				select {
				case lines <- line:
				case <-ctx.Done():
					readErr <- ctx.Err()
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	for {
		var line []byte
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("serve stdio: %w", err)
		case line = <-lines:
		}
		msgs, err := CheckMessage(line, p.limits())
		if err != nil {
			p.refuseLine(w, nil, line, err)
			continue
		}
		pr, err := principal(ctx)
		if err == nil && !pr.Expires.IsZero() && time.Now().After(pr.Expires) { // credentials: the real clock
			err = errors.New("credential expired")
		}
		if err != nil {
			p.refuseUnauthenticated(w, msgs, err)
			continue
		}
		if s == nil {
			if s, err = p.openSessionFor(pr, true); err != nil {
				p.refuseLine(w, pr, line, err)
				continue
			}
			s.out.attach(w.write)
		} else if err := s.bind(pr); err != nil {
			p.refuseUnauthenticated(w, msgs, err)
			continue
		}
		for _, m := range msgs {
			if m.Kind != wire.Request {
				p.handle(ctx, s, pr, m, discard{}, "")
				continue
			}
			if m.Method == "initialize" || !s.isOpen() {
				// In line: what follows initialize is served by an
				// initialised session, and a request read before it is
				// refused as such (run apart, it could be served after).
				p.handle(ctx, s, pr, m, &lineExchange{w: w}, "")
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				p.handle(ctx, s, pr, m, &lineExchange{w: w}, "")
			}()
		}
	}
}

// readLine reads one line, skipping (and reporting) lines over max without
// buffering them whole.
func readLine(src *bufio.Reader, max int, tooLarge func()) ([]byte, error) {
	var line []byte
	for {
		chunk, err := src.ReadSlice('\n')
		if len(line)+len(chunk) > max {
			tooLarge()
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = src.ReadSlice('\n')
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

// lineWriter writes whole lines, one writer at a time.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) write(msg []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := make([]byte, 0, len(msg)+1)
	buf = append(append(buf, msg...), '\n')
	_, err := l.w.Write(buf)
	return err
}

// lineExchange answers a request on stdio: related messages and the answer
// are lines, in order.
type lineExchange struct {
	w    *lineWriter
	mu   sync.Mutex
	done bool
}

func (x *lineExchange) send(msg []byte) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done {
		return errNoStream
	}
	return x.w.write(msg)
}

func (x *lineExchange) reply(msg []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.done {
		x.done = true
		x.w.write(msg)
	}
}

func (p *Proxy) refuseLine(w *lineWriter, pr *identity.Principal, line []byte, cause error) {
	why, code := frameRefusal(cause)
	if errors.Is(cause, errTooManySessions) {
		why, code = reason.TooManySessions, CodeDenied
	}
	who := audit.Subject{RequestID: newRequestID()}
	if pr != nil {
		who.Agent, who.Credential = pr.Agent, pr.CredentialID
	}
	e := audit.New(audit.TypeProtocol, audit.OutcomeDeny, why, p.opts.Now(), who)
	e.Detail = truncate(cause.Error(), 300)
	id, method := peekIDMethod(line)
	e.Method = method
	p.recordBackground(e)
	p.opts.Metrics.Refusal(why)
	if unanswered(line) {
		return // nothing to answer
	}
	w.write(frameAnswer(id, code, why, e.RequestID)) // id null when it cannot be read
}

func (p *Proxy) refuseUnauthenticated(w *lineWriter, msgs []*wire.Message, cause error) {
	e := audit.New(audit.TypeAuthn, audit.OutcomeDeny, reason.Unauthenticated, p.opts.Now(), audit.Subject{RequestID: newRequestID()})
	e.Detail = truncate(cause.Error(), 300)
	p.recordBackground(e)
	p.opts.Metrics.Refusal(reason.Unauthenticated)
	for _, m := range msgs {
		if m.Kind == wire.Request {
			w.write(deny(reason.Unauthenticated).message(m.IDBytes(), e.RequestID))
		}
	}
}
