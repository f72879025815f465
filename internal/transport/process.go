package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Grace periods when stopping a server process: its stdin is closed first
// (MCP's stdio shutdown), then it is sent SIGTERM, then SIGKILL.
const (
	stdinGrace = 2 * time.Second
	termGrace  = 2 * time.Second
)

// StartProcess starts cmd (whose Stdin and Stdout must be unset) and speaks
// MCP over its stdio. Closing the connection stops the process.
func StartProcess(cmd *exec.Cmd, maxLine, maxDepth int, log *slog.Logger) (*StreamConn, error) {
	return StartProcessThen(cmd, maxLine, maxDepth, log, nil)
}

// StartProcessThen is StartProcess, with onExit (if set) called once the
// process has exited (or did not start).
func StartProcessThen(cmd *exec.Cmd, maxLine, maxDepth int, log *slog.Logger, onExit func()) (*StreamConn, error) {
	if onExit == nil {
		onExit = func() {}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		onExit()
		return nil, fmt.Errorf("start server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		onExit()
		close(exited)
	}()
	release := func() error {
		stdin.Close()
		select {
		case <-exited:
			return nil
		case <-time.After(stdinGrace):
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return nil
		case <-time.After(termGrace):
		}
		if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
		<-exited
		return nil
	}
	return NewStreamConn(stdout, stdin, maxLine, maxDepth, release, log), nil
}

// Pipe connects to a server run in this process: serve gets the server's
// ends of two in-memory pipes (read requests from r, write to w) and must
// return when r is closed. Closing the connection closes the pipes.
func Pipe(ctx context.Context, serve func(ctx context.Context, r io.ReadCloser, w io.WriteCloser) error, maxLine, maxDepth int, log *slog.Logger) (*StreamConn, error) {
	toServer, fromClient := io.Pipe()
	toClient, fromServer := io.Pipe()
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := serve(ctx, toServer, fromServer); err != nil && log != nil {
			log.Debug("in-process server ended", "err", err)
		}
	}()
	release := func() error {
		fromClient.Close()
		toClient.Close()
		cancel()
		select {
		case <-served:
		case <-time.After(stdinGrace):
		}
		return nil
	}
	return NewStreamConn(toClient, fromClient, maxLine, maxDepth, release, log), nil
}
