package gateway

import (
	"crypto/rand"

	"github.com/portcullis-dev/portcullis/internal/config"
)

// DevAgent is the agent `serve --dev` declares and prints a token for.
const DevAgent = "demo-agent"

// DevUser is the person who signs in at the built-in authorization server
// of `serve --dev`.
const DevUser = "admin"

var devYAML = []byte(`
version: 1
agents:
  - name: ` + DevAgent + `
    roles: [demo]
upstreams:
  - name: demo
    builtin: demo
admins:
  - name: ` + DevAdmin + `
    roles: [admin]
`)

// DevAdmin is the person `serve --dev` signs into the console (with the
// one-time link its banner prints).
const DevAdmin = "dev-admin"

// DevConfig is the embedded configuration of `serve --dev`: the built-in
// demo upstream, one agent in the demo role, and (chosen by the caller) the
// embedded default policy.
func DevConfig(dataDir string) (*config.Config, error) {
	c, err := config.Parse(devYAML, ".")
	if err != nil {
		return nil, err
	}
	c.DataDir = dataDir
	// MCP clients that find no token sign in at the built-in authorization
	// server as DevUser, with a password made for this run (printed by
	// the banner, kept nowhere).
	c.Auth.AuthorizationServer = &config.AuthorizationServer{Users: []config.LocalUser{{Name: DevUser, Password: config.Value{Value: rand.Text()}}}, Optional: true}
	return c, nil
}
