package provenance

import (
	"slices"
	"strings"
	"unicode"
)

// Argument roles: what an argument of a high-impact tool decides. A policy
// reads the provenance of each role (context.roles.recipient == "untrusted").
const (
	RoleRecipient   = "recipient"   // who receives: people, addresses, accounts, channels
	RoleDestination = "destination" // where data goes or comes from: URLs, hosts, webhooks
	RoleAmount      = "amount"      // how much: money, quantities
	RoleTarget      = "target"      // the entity acted on: IDs, names, files, places
	RoleContent     = "content"     // free text sent out or written: bodies, messages, notes
	RoleNone        = "none"        // configured: the argument has no role
)

// Roles are the roles a policy can name, in the order of context.roles.
var Roles = []string{RoleRecipient, RoleDestination, RoleAmount, RoleTarget, RoleContent}

// ValidRole reports whether r may be configured for an argument.
func ValidRole(r string) bool {
	switch r {
	case RoleRecipient, RoleDestination, RoleAmount, RoleTarget, RoleContent, RoleNone:
		return true
	}
	return false
}

// Words of argument names, by the role they suggest.
var roleWords = []struct {
	role  string
	words []string
}{
	{RoleRecipient, []string{"recipient", "recipients", "to", "cc", "bcc", "email", "emails", "participants",
		"participant", "invitees", "invitee", "attendees", "attendee", "iban", "account", "payee", "beneficiary",
		"phone", "user", "users", "username", "member", "members", "channel", "assignee", "reviewer", "owner",
		"address", "receiver", "receivers", "addressee", "contact", "customer", "friend", "guest", "guests"}},
	{RoleDestination, []string{"url", "urls", "uri", "link", "host", "hostname", "domain", "endpoint", "webhook",
		"website", "server", "callback", "redirect", "destination", "dest"}},
	{RoleAmount, []string{"amount", "price", "sum", "total", "quantity", "value", "fee", "cost", "budget"}},
	{RoleContent, []string{"body", "content", "message", "text", "subject", "description", "note", "notes",
		"comment", "summary", "title", "caption", "reply", "post"}},
	{RoleTarget, []string{"id", "ids", "name", "file", "filename", "path", "hotel", "restaurant", "company",
		"event", "item", "product", "booking", "order", "document", "key", "location", "place", "city"}},
}

// handles are words that name a thing by reference: "recipient_id" is
// still a recipient, "user_name" a user.
var handles = []string{"id", "ids", "key", "name", "handle"}

// DeriveRole is the role an argument's name suggests, or "" when it
// suggests none. Names are split at "_", "-", "." and case changes, and
// the last word that suggests a role decides, as the head of an English
// compound does ("user_email" is a recipient, "file_url" a destination),
// except that a handle ("id", "name") of a recipient or destination is
// one ("recipient_id", "channel_id").
func DeriveRole(name string) string {
	words := nameWords(name)
	for i := len(words) - 1; i >= 0; i-- {
		role := wordRole(words[i])
		if role == "" {
			continue
		}
		if slices.Contains(handles, words[i]) {
			for j := i - 1; j >= 0; j-- {
				if r := wordRole(words[j]); r == RoleRecipient || r == RoleDestination {
					return r
				}
			}
		}
		return role
	}
	return ""
}

func wordRole(w string) string {
	for _, rw := range roleWords {
		if slices.Contains(rw.words, w) {
			return rw.role
		}
	}
	return ""
}

func nameWords(name string) []string {
	var words []string
	var b strings.Builder
	prevLower := false
	flush := func() {
		if b.Len() > 0 {
			words = append(words, b.String())
			b.Reset()
		}
	}
	for _, r := range name {
		switch {
		case r == '_' || r == '-' || r == '.' || r == ' ':
			flush()
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			flush()
		}
		b.WriteRune(unicode.ToLower(r))
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	flush()
	return words
}
