// Command barehop is the floor the gateway is measured against: a plain
// reverse proxy that relays MCP's streamable HTTP byte for byte, with no
// authentication, policy, screening or audit. Usage:
//
//	barehop -listen 127.0.0.1:0 -target http://127.0.0.1:9000 [-addr-file F]
package main

import (
	"bytes"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	target := flag.String("target", "", "upstream base URL")
	addrFile := flag.String("addr-file", "", "write the bound address here")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || *target == "" {
		log.Fatal("barehop: -target URL required")
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.FlushInterval = -1 // event streams pass as they come
	p.Transport = &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o644)
	}
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body is read first (the gateway does the same): streaming a
		// request body while the answer streams back lost answers here.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		p.ServeHTTP(w, r)
	})))
}
