package wire

// DefaultMaxDepth bounds nesting when a caller gives no limit.
const DefaultMaxDepth = 64

// MaxSSEEvent bounds one server-sent event read by EventReader (the largest
// message an upstream may send over SSE).
const MaxSSEEvent = 64 << 20
