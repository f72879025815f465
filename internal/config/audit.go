package config

import (
	"fmt"
	"regexp"
	"time"
)

// Audit configures the tamper-evident audit log.
type Audit struct {
	// Origin names the log in its signed checkpoints (and its key).
	Origin string `json:"origin,omitempty"`
	// CheckpointInterval is how often a grown log gets a signed checkpoint
	// (and always at shutdown).
	CheckpointInterval Duration `json:"checkpoint_interval,omitempty"`
	// CheckpointCopies are directories (ideally on another host's storage)
	// where every checkpoint is also written.
	CheckpointCopies []string `json:"checkpoint_copies,omitempty"`
	// CheckpointURL, if set, receives every checkpoint as an HTTP POST.
	CheckpointURL string `json:"checkpoint_url,omitempty"`
	// Export streams committed events, as OCSF JSON, to SIEMs.
	Export []Export `json:"export,omitempty"`
	// Sync is when a decision must be on disk: "background" (default with
	// the local store: committed to the log, surviving a crash or kill of
	// the gateway, before the upstream sees the call; on disk within
	// sync_window, the answer not waiting for it; denials are still on
	// disk before the agent hears of them; not with store.postgres),
	// "before_answer" (default with store.postgres: committed before the
	// upstream sees the call, on disk before the agent sees the answer) or
	// "before_relay" (on disk before the upstream sees the call). With
	// store.synchronous normal nothing is fsynced and all three mean
	// committed.
	Sync string `json:"sync,omitempty"`
	// SyncWindow is the least time between two fsyncs of the log under
	// load: the calls committed meanwhile share one (default 10ms with
	// "background", the local store's default, 2ms otherwise; 100µs to
	// 50ms). A lone call whose answer waits for the disk is synced at
	// once; with "background", where no answer waits, a decision's fsync
	// starts at most the window after it, while the disk keeps up.
	SyncWindow Duration `json:"sync_window,omitempty"`
}

// audit.sync_window's defaults: answers wait for the fsync, or (with
// background) none do and the window only bounds what a crash of the
// machine may lose.
const (
	DefaultSyncWindow           = 2 * time.Millisecond
	DefaultBackgroundSyncWindow = 10 * time.Millisecond
)

// Audit sync modes.
const (
	SyncBeforeAnswer = "before_answer"
	SyncBeforeRelay  = "before_relay"
	SyncBackground   = "background"
)

// Export is one destination for audit events. Exactly one of File,
// Webhook, Syslog and OTLP is set.
type Export struct {
	// Name identifies the destination; its progress is kept under it.
	Name    string         `json:"name"`
	File    *FileExport    `json:"file,omitempty"`
	Webhook *WebhookExport `json:"webhook,omitempty"`
	Syslog  *SyslogExport  `json:"syslog,omitempty"`
	OTLP    *WebhookExport `json:"otlp,omitempty"`
}

// FileExport appends JSON lines to a file.
type FileExport struct {
	Path string `json:"path"`
}

// WebhookExport POSTs to a URL (for OTLP: the collector's base URL).
type WebhookExport struct {
	URL     string           `json:"url"`
	Headers map[string]Value `json:"headers,omitempty"`
}

// SyslogExport sends RFC 5424 messages over TCP, or TLS when TLS is true.
type SyslogExport struct {
	Address string `json:"address"`
	TLS     bool   `json:"tls,omitempty"`
	// CAFile verifies the receiver's certificate (default: system roots).
	CAFile string `json:"ca_file,omitempty"`
}

// Audit defaults.
const (
	DefaultAuditOrigin        = "portcullis.local/audit"
	DefaultCheckpointInterval = 10 * time.Second
)

// originRE is what an audit log's origin may be (its checkpoints' first line).
var originRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}$`)

func (a *Audit) validate(c *Config) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !originRE.MatchString(a.Origin) {
		add("audit.origin: %q must be a name like example.com/audit (no spaces or '+')", a.Origin)
	}
	if a.Sync != SyncBeforeAnswer && a.Sync != SyncBeforeRelay && a.Sync != SyncBackground {
		add("audit.sync: %q is not %s, %s or %s", a.Sync, SyncBeforeAnswer, SyncBeforeRelay, SyncBackground)
	}
	if a.Sync == SyncBackground && c.Store.Postgres != nil {
		// A fleet's log is the database's: a flush that fails there is
		// found by the calls waiting for it, and with background none wait.
		add("audit.sync: background is for the local audit journal; with store.postgres use before_answer or before_relay")
	}
	if w := a.SyncWindow.D(); w < 100*time.Microsecond || w > 50*time.Millisecond {
		add("audit.sync_window: between 100µs and 50ms")
	}
	if a.CheckpointInterval.D() < time.Second {
		add("audit.checkpoint_interval: at least 1s")
	}
	if u := a.CheckpointURL; u != "" {
		errs = append(errs, checkURL("audit.checkpoint_url", u)...)
	}
	names := map[string]bool{}
	for i, x := range a.Export {
		errs = append(errs, x.validate(fmt.Sprintf("audit.export[%d]", i))...)
		if names[x.Name] {
			add("audit.export[%d].name: duplicate %q", i, x.Name)
		}
		names[x.Name] = true
	}
	return errs
}

func (x *Export) validate(at string) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(at+"."+format, a...)) }
	if !nameRE.MatchString(x.Name) {
		add("name: %q must match %s", x.Name, nameRE)
	}
	n := 0
	if x.File != nil {
		n++
		if x.File.Path == "" {
			add("file.path: required")
		}
	}
	for kind, w := range map[string]*WebhookExport{"webhook": x.Webhook, "otlp": x.OTLP} {
		if w != nil {
			n++
			errs = append(errs, w.validate(at+"."+kind)...)
		}
	}
	if x.Syslog != nil {
		n++
		if x.Syslog.Address == "" {
			add("syslog.address: required (host:port)")
		}
	}
	if n != 1 {
		add("exactly one of file, webhook, syslog, otlp must be set")
	}
	return errs
}

// validate checks a URL and its header values.
func (w *WebhookExport) validate(at string) []error {
	errs := checkURL(at+".url", w.URL)
	for k, v := range w.Headers {
		if err := v.validate(k); err != nil {
			errs = append(errs, fmt.Errorf("%s.headers.%s: %w", at, k, err))
		}
	}
	return errs
}
