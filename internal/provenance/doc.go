// Package provenance tells, for a value an agent puts in a tool call,
// where the session first met it: in what the user asked for or a trusted
// source, in untrusted content other people wrote, or nowhere (the model
// wrote it).
//
// A Tracker belongs to one MCP session. Everything the session is given is
// observed with its source: the task's purpose (the user's request),
// trusted output (an upstream or a result field the operator trusts),
// untrusted output. Text is reduced to a skeleton before it is indexed and
// before a value is looked up: folded case, compatibility forms and
// diacritics, nothing but letters and digits, so that spacing, separators
// and case ("GB29 NWBK 6016", "gb29-nwbk-6016") do not hide a value. Numbers
// are also indexed in canonical form ("1,000.50" is 1000.5).
//
// The skeleton is indexed as 8-byte grams at every fourth position; a
// value is found when, at one of the four phases, every gram of its
// skeleton is there (a substring test), and values under 11 letters and
// digits are indexed as whole runs of words. The index is a set of blocked
// Bloom filters that grows by doubling up to a fixed size per session
// (MaxBytes); no text is kept. A false match (a value reported seen when
// it was not) has probability under 0.1% per lookup for values under 8
// letters and digits even in a full filter (four times that for
// values of 11 to 14), and vanishes for longer ones
// (every gram must be a false match); see docs/screening.md. Once a filter is full the session
// stops learning from that source: later values read as unseen, which a
// policy that asks for trusted provenance refuses (fail closed).
//
// First sight decides for output: a gram first seen in untrusted output is
// not made trusted by trusted output later (a value the agent wrote to a
// trusted store and read back stays untrusted). The user's request is
// authoritative and always trusted. Call arguments are never a source.
//
// A Tracker is safe for concurrent use.
package provenance
