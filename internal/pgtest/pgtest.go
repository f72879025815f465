// Package pgtest runs a real PostgreSQL server for tests and benchmarks,
// from the machine's PostgreSQL installation (initdb and postgres on PATH
// or under /usr/lib/postgresql), listening on a Unix socket only: DSN gives
// each test a fresh database on one server per test binary; Start gives a
// benchmark a server of its own.
//
// Without PostgreSQL installed a test skips, except under CI (CI=true),
// where the missing server is a failure: CI installs it
// (scripts/install-test-deps.sh).
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

var (
	once    sync.Once
	srv     *Server
	srvErr  error
	counter atomic.Int64
)

// Server is a running PostgreSQL server.
type Server struct {
	dir  string // data directory and socket directory's parent
	sock string
	cmd  *exec.Cmd
}

// Options tune a server.
type Options struct {
	// Durable keeps PostgreSQL's durable defaults (fsync, full-page
	// writes), for benchmarks. Tests run without them: they kill
	// gateways, never the server.
	Durable bool
}

// DSN returns the connection URL of a new, empty database on the shared
// server, dropped when tb ends.
func DSN(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { srv, srvErr = Start(Options{}) })
	if srvErr != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("PostgreSQL: %v", srvErr)
		}
		tb.Skipf("PostgreSQL not available: %v", srvErr)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), counter.Add(1))
	dsn, err := srv.CreateDatabase(name)
	if err != nil {
		tb.Fatal(err)
	}
	admin := srv.url("postgres")
	tb.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
	})
	return dsn
}

// CreateDatabase creates an empty database (name: letters, digits and
// underscores) and returns its connection URL.
func (s *Server) CreateDatabase(name string) (string, error) {
	if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return "", fmt.Errorf("database name %q", name)
	}
	db, err := sql.Open("pgx", s.url("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE DATABASE ` + name + ` TEMPLATE template0 ENCODING 'UTF8'`); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return s.url(name), nil
}

// Stop stops the tests' shared server if one was started (call it from
// TestMain after m.Run; without it the server dies with the test binary).
func Stop() {
	if srv != nil {
		srv.Stop()
	}
}

// Stop stops the server and removes its files.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
	}
	os.RemoveAll(s.dir)
}

func (s *Server) url(db string) string {
	return "postgres:///" + db + "?host=" + s.sock + "&user=postgres&sslmode=disable"
}

// binDir finds PostgreSQL's programs.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("initdb and postgres not found (install the postgresql package)")
}

// Start starts a server of its own (stop it with Stop).
func Start(o Options) (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, sock: filepath.Join(dir, "sock")}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(s.sock, 0o755); err != nil {
		return nil, err
	}
	// PostgreSQL refuses to run as root: as root, run it as the postgres
	// account the package creates.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres account: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, p := range []string{dir, s.sock} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	run := func(name string, args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
		return c
	}
	if out, err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "--locale=C", "-E", "UTF8").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, lastLines(out))
	}
	// Sockets only; for tests, the speed of a server whose flushes reach
	// no disk (commits still wait for them: the store refuses a database
	// that commits asynchronously).
	args := []string{"-D", data, "-k", s.sock, "-c", "listen_addresses=", "-c", "max_connections=300"}
	if !o.Durable {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off")
	}
	s.cmd = run("postgres", args...)
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("postgres: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("pgx", s.url("postgres"))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
		}
		if err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			s.cmd.Process.Kill()
			return nil, fmt.Errorf("postgres did not start: %v: %s", err, lastLines(log))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastLines(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}
