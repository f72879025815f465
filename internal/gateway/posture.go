package gateway

import (
	"context"
	"time"

	"github.com/portcullis-dev/portcullis/internal/posture"
)

// PostureInterval is how often the gateway computes its posture for
// /metrics (portcullis_posture_tier, portcullis_outcome).
const PostureInterval = 5 * time.Minute

// watchPosture computes the posture at start and every PostureInterval,
// off every request's path, and exports it as metrics.
func (g *Gateway) watchPosture(ctx context.Context) error {
	tick := time.NewTicker(PostureInterval)
	defer tick.Stop()
	for {
		g.exportPosture(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (g *Gateway) exportPosture(ctx context.Context) {
	f, err := posture.Gather(ctx, posture.Source{Config: g.cfg, ConfigPath: g.cfg.File(), Store: g.store, Policy: g.engine.Current()})
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("posture not computed", "err", err)
		}
		return
	}
	g.metrics.Posture(posture.Assess(f).Gauges())
}
