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
// The skeleton is indexed as 8-byte grams at every fourth position, plus
// the gram that begins and the gram that ends each word; a value of 11 or
// more letters and digits is trusted when its first and last grams are
// where a seen word began and ended and, at one of the four phases, every
// gram between is there (a substring test). Shorter values are indexed and
// looked up as whole runs of words. Identifiers are compared exactly, as
// written: addresses, hosts, IBANs and long numbers (screen.Destinations)
// and words carrying a dot, at sign, slash or colon ("bob@example.com" is
// not "bo@bexample.com"); a value carrying an identifier is trusted only
// if each identifier was seen trusted. Numbers are compared in canonical
// form, every reading of an ambiguous one ("25,000" is 25 or 25000) having
// to be trusted.
//
// The index is a set of blocked Bloom filters that grows by doubling up to
// a fixed size per session (MaxBytes); no text is kept, and a value seen
// twice is counted once. A false match (a value reported seen when it was
// not) has probability under 0.1% per lookup for short values even in a
// full filter (docs/screening.md). Once the untrusted filter is full, what
// it did not learn cannot be told from what the model wrote: every value
// not trusted reads as untrusted, and trusted output teaches nothing more
// (fail closed).
//
// First sight decides for output: a gram first seen in untrusted output is
// not made trusted by trusted output later (a value the agent wrote to a
// trusted store and read back stays untrusted). The user's request is
// authoritative and always trusted; so are the short fields of a record
// the request names (ObserveNamedRecords). Call arguments are never a
// source.
//
// Known limits: a long value spliced from two trusted texts, each piece
// aligned with the index, reads trusted; "1.085" also reads as 1085; a
// value the model computes or paraphrases reads as unseen.
//
// A Tracker is safe for concurrent use.
package provenance
