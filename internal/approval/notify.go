package approval

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/portcullis-dev/portcullis/internal/outbound"
)

// WebhookNotifier POSTs a JSON description of each request to a URL (a chat
// or ticketing integration). The payload includes the arguments: the
// endpoint is a reviewer's channel and must be trusted with them.
type WebhookNotifier struct {
	URL    string
	Header http.Header
	Client Poster // nil: outbound.Default()
}

// Poster sends a request body to an outside destination (the gateway's
// outbound client: timeouts, retries, no redirects).
type Poster interface {
	Post(ctx context.Context, url string, header http.Header, contentType string, body []byte) error
}

var _ Notifier = (*WebhookNotifier)(nil)

// Notify implements Notifier.
func (w *WebhookNotifier) Notify(ctx context.Context, r *Request) error {
	body, err := json.Marshal(map[string]any{
		"id": r.ID, "agent": r.Agent, "user": r.User, "task": r.Task, "tool": r.Tool,
		"arguments": r.Arguments, "arguments_sha256": r.ArgsSHA256, "reasons": r.Reasons, "findings": r.Findings,
		"expires": r.Expires.Format(time.RFC3339), "text": r.Describe(),
		"approve": "portcullis approvals approve " + r.ID, "deny": "portcullis approvals deny " + r.ID,
	})
	if err != nil {
		return err
	}
	c := w.Client
	if c == nil {
		c = outbound.Default()
	}
	if err := c.Post(ctx, w.URL, w.Header, "application/json", body); err != nil {
		return fmt.Errorf("approval webhook: %w", err)
	}
	return nil
}
