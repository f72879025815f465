package admin

import (
	"encoding/json"
	"net/http"
)

// serveJWKS publishes the token-verification key so that other services can
// verify Portcullis-issued tokens offline.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=300")
	json.NewEncoder(w).Encode(s.key.JWKS())
}
