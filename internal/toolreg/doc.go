// Package toolreg pins the tool definitions each upstream offers and
// quarantines what changes.
//
// A tool's definition (name, title, description, input and output schemas,
// annotations) is reduced to a canonical digest, recorded per upstream. In
// trust-on-first-use mode the definitions an upstream offers the first time
// it is ever seen are approved; in strict mode nothing is approved without an
// operator. After that, a new tool, a changed definition, or a tool that
// reappears under a new name with an approved tool's description is
// quarantined: hidden from agents, its calls refused, an event raised, until
// an operator reviews the diff and approves or rejects it
// (`portcullis tools diff|approve|reject`).
//
// A Registry is safe for concurrent use.
package toolreg
