package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis-dev/portcullis/internal/pgtest"
	"github.com/portcullis-dev/portcullis/internal/store"
)

func TestVersionSaysMoreThanDev(t *testing.T) {
	t.Parallel()
	out, _, err := portcullis(t, nil, "--version")
	if err != nil || !strings.HasPrefix(out, "portcullis ") || !strings.Contains(out, "built by  go") {
		t.Fatalf("--version: %v %q", err, out)
	}
}

func TestStorePostgresConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"inline password": "version: 1\nstore: {postgres: {value: 'postgres://u:hunter2hunter2@db/p'}}\n",
		"from secret":     "version: 1\nstore: {postgres: {from_secret: db}}\n",
		"not postgres":    "version: 1\nstore: {postgres: {value: 'mysql://db/p'}}\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		writeFile(t, p, body)
		_, stderr, err := portcullis(t, nil, "config", "validate", p)
		if err == nil || !strings.Contains(stderr, "store.postgres") {
			t.Errorf("%s: accepted (stderr %q)", name, stderr)
		}
		if strings.Contains(stderr, "hunter2") {
			t.Errorf("%s: the error repeats the password: %s", name, stderr)
		}
	}
}

// portcullis migrate on the data directory's SQLite file and on a
// PostgreSQL database named by store.postgres (from the environment).
func TestMigrate(t *testing.T) {
	t.Parallel()
	want := "schema at version " + itoa(store.SchemaVersion())
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "version: 1\ndata_dir: data\n")
	if out, stderr, err := portcullis(t, nil, "migrate", "--status", "-c", cfg); err != nil || !strings.Contains(out, "sqlite store, schema version 0") {
		t.Fatalf("status of a new data directory: %v %q %s", err, out, stderr)
	}
	if out, stderr, err := portcullis(t, nil, "migrate", "-c", cfg); err != nil || !strings.Contains(out, want) {
		t.Fatalf("migrate: %v %q %s", err, out, stderr)
	}

	pg := filepath.Join(dir, "pg.yaml")
	writeFile(t, pg, "version: 1\ndata_dir: pgdata\nstore: {postgres: {from_env: TEST_STORE_URL}}\n")
	env := []string{"TEST_STORE_URL=" + pgtest.DSN(t)}
	if out, stderr, err := portcullis(t, env, "migrate", "--status", "-c", pg); err != nil || !strings.Contains(out, "postgres store, schema version 0") {
		t.Fatalf("status of a new database: %v %q %s", err, out, stderr)
	}
	if out, stderr, err := portcullis(t, env, "migrate", "-c", pg); err != nil || !strings.Contains(out, "PostgreSQL store") || !strings.Contains(out, want) {
		t.Fatalf("migrate: %v %q %s", err, out, stderr)
	}
	if out, _, err := portcullis(t, nil, "migrate", "-c", pg); err == nil || strings.Contains(out, "schema") {
		t.Fatalf("migrate without the URL's variable: %v %q", err, out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
