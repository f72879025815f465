package mcpproxy

import "github.com/portcullis-dev/portcullis/internal/buildinfo"

// Limits on what upstreams offer. Limits on what agents send come from
// config.Limits.
const (
	// MaxListItems bounds the tools (or prompts, resources, templates) one
	// upstream may offer.
	MaxListItems = 2000
	// MaxDescriptionBytes bounds one tool, prompt or resource description.
	MaxDescriptionBytes = 16 << 10
	// MaxSchemaBytes bounds one encoded input or output schema.
	MaxSchemaBytes = 64 << 10
	// MaxURIBytes bounds a resource URI or template.
	MaxURIBytes = 2048
)

// Version is reported to upstreams and agents as the implementation version.
var Version = buildinfo.Version()
