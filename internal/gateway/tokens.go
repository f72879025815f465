package gateway

import (
	"context"
	"time"

	"github.com/portcullis-dev/portcullis/internal/token"
)

// IssueToken mints an agent token with the gateway's own key and store
// (used for the `serve --dev` banner before the recorder runs).
func (g *Gateway) IssueToken(ctx context.Context, agent string, ttl time.Duration) (string, token.Claims, error) {
	return g.ops.IssueToken(ctx, agent, ttl, "portcullis gateway")
}
