package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// WebhookNotifier POSTs a JSON description of each request to a URL (a chat
// or ticketing integration). The payload includes the arguments: the
// endpoint is a reviewer's channel and must be trusted with them.
type WebhookNotifier struct {
	URL    string
	Header http.Header
	Client *http.Client
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, vs := range w.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	c := w.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("approval webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("approval webhook: %s", resp.Status)
	}
	return nil
}
