package gateway

import (
	"fmt"
	"log/slog"

	"github.com/portcullis-dev/portcullis/internal/approval"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/outbound"
	"github.com/portcullis-dev/portcullis/internal/store"
)

func newApprovals(cfg *config.Config, st *store.DB, secrets func(string) (string, error), out *outbound.Client, log *slog.Logger) (*approval.Queue, error) {
	q := &approval.Queue{Store: st, Timeout: cfg.Approvals.Timeout.D(), Log: log}
	if w := cfg.Approvals.Webhook; w != nil {
		h, err := headers(cfg, w.Headers, secrets)
		if err != nil {
			return nil, fmt.Errorf("approvals webhook: %w", err)
		}
		q.Notifier = &approval.WebhookNotifier{URL: w.URL, Header: h, Client: out}
	}
	return q, nil
}
