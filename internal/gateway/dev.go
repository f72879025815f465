package gateway

import (
	"github.com/portcullis-dev/portcullis/internal/config"
)

// DevAgent is the agent `serve --dev` declares and prints a token for.
const DevAgent = "demo-agent"

var devYAML = []byte(`
version: 1
agents:
  - name: ` + DevAgent + `
    roles: [demo]
upstreams:
  - name: demo
    builtin: demo
`)

// DevConfig is the embedded configuration of `serve --dev`: the built-in
// demo upstream, one agent in the demo role, and (chosen by the caller) the
// embedded default policy.
func DevConfig(dataDir string) (*config.Config, error) {
	c, err := config.Parse(devYAML, ".")
	if err != nil {
		return nil, err
	}
	c.DataDir = dataDir
	return c, nil
}
