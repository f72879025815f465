package ops

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/reason"
)

// MaxConsoleLinkTTL bounds how long a console sign-in link stays usable.
const MaxConsoleLinkTTL = time.Hour

// ConsoleLink issues a one-time sign-in link token for admin (a declared
// admin), usable once within ttl, and audits it.
func (o *Ops) ConsoleLink(ctx context.Context, admin, by string, ttl time.Duration) (string, time.Time, error) {
	if err := attributed(by); err != nil {
		return "", time.Time{}, err
	}
	if !o.cfg.Admin(admin) {
		return "", time.Time{}, fmt.Errorf("%q is not a declared admin (admins in the configuration)", admin)
	}
	if ttl <= 0 || ttl > MaxConsoleLinkTTL {
		return "", time.Time{}, fmt.Errorf("a sign-in link lives between 1s and %s", MaxConsoleLinkTTL)
	}
	token := "pcl_" + rand.Text() + rand.Text()
	expires := time.Now().Add(ttl)
	e := audit.New(audit.TypeIdentity, audit.OutcomeInfo, reason.ConsoleLinkIssued, time.Now(), audit.Subject{User: admin})
	e.Detail = fmt.Sprintf("by %s, expires %s", by, expires.UTC().Format(time.RFC3339))
	if err := audit.WriteNow(ctx, o.st, e); err != nil {
		return "", time.Time{}, err
	}
	if err := o.st.AddConsoleLink(ctx, token, admin, expires); err != nil {
		return "", time.Time{}, err
	}
	return token, expires, nil
}
