package identity

// MetaCaller is the request _meta key by which the gateway tells its
// built-in upstreams (memory, evidence) who calls. It sets it on every
// request towards them, overwriting what an agent sent, and nulls it
// towards any other upstream.
const MetaCaller = "dev.portcullis/caller"

// Caller is who calls, as the gateway vouches for it (MetaCaller's value).
type Caller struct {
	Agent     string   `json:"agent"`
	User      string   `json:"user,omitempty"`
	Task      string   `json:"task,omitempty"`
	Session   string   `json:"session,omitempty"`
	RequestID string   `json:"request_id,omitempty"`
	Labels    []string `json:"labels,omitempty"`
	// Findings are screening's detections in the call's arguments.
	Findings []string `json:"findings,omitempty"`
	// UntrustedArguments name the arguments whose values first appeared in
	// untrusted output (argument provenance).
	UntrustedArguments []string `json:"untrusted_arguments,omitempty"`
}
