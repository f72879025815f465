package toolreg

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// BOMUpstream describes one upstream for the AI-BOM.
type BOMUpstream struct {
	Name      string
	Transport string // stdio, http, builtin
	Command   string
	Args      []string
	URL       string
	Pins      []Pin
}

// npmSpec matches an npm package argument: name@version or @scope/name@version.
var npmSpec = regexp.MustCompile(`^((?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*)(?:@([^@\s]+))?$`)

// npmPackage finds the package an npx-style launch (npx, bunx) runs: the
// first argument that is not a flag.
func npmPackage(command string, args []string) (name, version string, ok bool) {
	if b := filepath.Base(command); b != "npx" && b != "bunx" {
		return "", "", false
	}
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		if m := npmSpec.FindStringSubmatch(a); m != nil {
			return m[1], m[2], true
		}
		return "", "", false
	}
	return "", "", false
}

// purl is the package URL of an npm package (the scope's "@" escaped).
func purl(name, version string) string {
	if strings.HasPrefix(name, "@") {
		name = "%40" + name[1:]
	}
	if version != "" {
		name += "@" + version
	}
	return "pkg:npm/" + name
}

// ExactVersion reports whether v pins one release (not a range or a tag).
func ExactVersion(v string) bool {
	return regexp.MustCompile(`^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$`).MatchString(v)
}

// BOM returns a CycloneDX 1.6 document (as a JSON-ready value) of the
// gateway, its upstream servers (packages, versions, executable hashes,
// package URLs) and their tools with definition digests and pin state.
func BOM(version string, ups []BOMUpstream, now time.Time) map[string]any {
	var components, services []map[string]any
	var deps []string
	for _, u := range ups {
		svcRef := "service/" + u.Name
		deps = append(deps, svcRef)
		props := []map[string]any{prop("portcullis:upstream", u.Name), prop("portcullis:transport", u.Transport)}
		svc := map[string]any{"bom-ref": svcRef, "name": u.Name, "properties": &props}
		if u.URL != "" {
			svc["endpoints"] = []string{redactURL(u.URL)}
		}
		if u.Transport == "stdio" {
			comp, compRef := launchComponent(u)
			components = append(components, comp)
			props = append(props, prop("portcullis:component", compRef))
		}
		var tools []map[string]any
		for _, p := range u.Pins {
			tools = append(tools, map[string]any{
				"bom-ref": fmt.Sprintf("tool/%s/%s/%s", u.Name, p.Name, p.Digest),
				"name":    p.Name,
				"properties": []map[string]any{
					prop("portcullis:definition-digest", p.Digest), prop("portcullis:pin-state", p.State),
					prop("portcullis:first-seen", p.SeenAt.Format(time.RFC3339)), prop("portcullis:decided-by", p.DecidedBy),
				},
			})
		}
		if len(tools) > 0 {
			svc["services"] = tools
		}
		services = append(services, svc)
	}
	var serial [16]byte
	rand.Read(serial[:])
	serial[6], serial[8] = serial[6]&0x0f|0x40, serial[8]&0x3f|0x80
	h := hex.EncodeToString(serial[:])
	return map[string]any{
		"bomFormat":    "CycloneDX",
		"specVersion":  "1.6",
		"serialNumber": fmt.Sprintf("urn:uuid:%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:]),
		"version":      1,
		"metadata": map[string]any{
			"timestamp": now.UTC().Format(time.RFC3339),
			"tools":     map[string]any{"components": []map[string]any{{"type": "application", "name": "portcullis", "version": version}}},
			"component": map[string]any{"type": "application", "bom-ref": "gateway", "name": "portcullis-gateway", "version": version},
		},
		"components":   nonNil(components),
		"services":     nonNil(services),
		"dependencies": []map[string]any{{"ref": "gateway", "dependsOn": nonNilS(deps)}},
	}
}

func launchComponent(u BOMUpstream) (map[string]any, string) {
	ref := "component/" + u.Name
	c := map[string]any{"type": "application", "bom-ref": ref, "name": u.Command}
	props := []map[string]any{prop("portcullis:command", u.Command), prop("portcullis:args", strings.Join(u.Args, " "))}
	if path, err := exec.LookPath(u.Command); err == nil {
		if sum, err := fileSHA256(path); err == nil {
			c["hashes"] = []map[string]any{{"alg": "SHA-256", "content": sum}}
			props = append(props, prop("portcullis:executable", path))
		}
	}
	if name, version, ok := npmPackage(u.Command, u.Args); ok {
		c["name"] = name
		if version != "" {
			c["version"] = version
		}
		c["purl"] = purl(name, version)
		props = append(props, prop("portcullis:version-pinned", fmt.Sprint(ExactVersion(version))))
	}
	c["properties"] = props
	return c, ref
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, 1<<30)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// redactURL drops credentials and the query (which may carry keys).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "invalid-url"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

func prop(k, v string) map[string]any { return map[string]any{"name": k, "value": v} }

func nonNil(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}

func nonNilS(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}
