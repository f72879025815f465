package config

import "slices"

// Admin declares a person who may use the admin API (review approvals) with
// an admin token (`portcullis token issue --admin NAME`), and the web
// console with the roles given.
type Admin struct {
	Name string `json:"name"`
	// Roles in the console (docs/console.md): viewer (reads every page),
	// approver (and decides held calls), operator (and reviews tools and
	// alerts, revokes), admin (all of it). Default: approver.
	Roles []string `json:"roles,omitempty"`
	// Identities are the other names the person is known by as a user
	// agents act for (an identity provider's email, say): separation of
	// duties keeps them from deciding those requests too (compared
	// without regard to case).
	Identities []string `json:"identities,omitempty"`
}

// Is reports whether user names this admin (its name or one of its
// identities, ASCII letters compared without regard to case).
func (a Admin) Is(user string) bool {
	return user != "" && (SameName(user, a.Name) || a.HasIdentity(user))
}

// HasIdentity reports whether user is one of the admin's identities (an
// identity provider's names for the person; never its local name).
func (a Admin) HasIdentity(user string) bool {
	for _, id := range a.Identities {
		if SameName(user, id) {
			return true
		}
	}
	return false
}

// SameName compares two names, folding the case of ASCII letters only
// (Unicode folding would make "ſam" the admin "sam").
func SameName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 0x80 || y >= 0x80 {
			if x != y {
				return false
			}
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// ConsoleRoles are the console's roles, weakest first (each includes the
// ones before it).
var ConsoleRoles = []string{"viewer", "approver", "operator", "admin"}

// ConsoleRole is the strongest console role of the admin (approver by
// default).
func (a Admin) ConsoleRole() string {
	best := -1
	for _, r := range a.Roles {
		best = max(best, slices.Index(ConsoleRoles, r))
	}
	if best < 0 {
		return "approver"
	}
	return ConsoleRoles[best]
}

// Admin reports whether name is a declared admin.
func (c *Config) Admin(name string) bool {
	_, ok := c.AdminNamed(name)
	return ok
}

// AdminNamed returns the declared admin called name.
func (c *Config) AdminNamed(name string) (Admin, bool) {
	for _, a := range c.Admins {
		if a.Name == name {
			return a, true
		}
	}
	return Admin{}, false
}
