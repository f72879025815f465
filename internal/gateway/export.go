package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"github.com/portcullis-dev/portcullis/internal/audit"
	"github.com/portcullis-dev/portcullis/internal/config"
	"github.com/portcullis-dev/portcullis/internal/outbound"
)

// newSinks builds the configured audit export destinations. Secret header
// values are resolved here and live only in the sinks' request headers.
func newSinks(cfg *config.Config, secrets func(string) (string, error), client *outbound.Client) ([]audit.Sink, error) {
	host, _ := os.Hostname()
	var sinks []audit.Sink
	for _, x := range cfg.Audit.Export {
		switch {
		case x.File != nil:
			sinks = append(sinks, &audit.FileSink{SinkName: x.Name, Path: cfg.Path(x.File.Path)})
		case x.Webhook != nil:
			h, err := headers(cfg, x.Webhook.Headers, secrets)
			if err != nil {
				return nil, fmt.Errorf("audit export %s: %w", x.Name, err)
			}
			sinks = append(sinks, &audit.WebhookSink{SinkName: x.Name, URL: x.Webhook.URL, Header: h, Client: client})
		case x.OTLP != nil:
			h, err := headers(cfg, x.OTLP.Headers, secrets)
			if err != nil {
				return nil, fmt.Errorf("audit export %s: %w", x.Name, err)
			}
			sinks = append(sinks, &audit.OTLPSink{SinkName: x.Name, Endpoint: x.OTLP.URL, Header: h, Client: client})
		case x.Syslog != nil:
			s := &audit.SyslogSink{SinkName: x.Name, Address: x.Syslog.Address, Hostname: host}
			if x.Syslog.TLS {
				tc := &tls.Config{MinVersion: tls.VersionTLS12}
				if x.Syslog.CAFile != "" {
					pem, err := os.ReadFile(cfg.Path(x.Syslog.CAFile))
					if err != nil {
						return nil, fmt.Errorf("audit export %s: %w", x.Name, err)
					}
					tc.RootCAs = x509.NewCertPool()
					if !tc.RootCAs.AppendCertsFromPEM(pem) {
						return nil, fmt.Errorf("audit export %s: no certificates in %s", x.Name, x.Syslog.CAFile)
					}
				}
				s.TLS = tc
			}
			sinks = append(sinks, s)
		}
	}
	return sinks, nil
}

func headers(cfg *config.Config, vals map[string]config.Value, secrets func(string) (string, error)) (http.Header, error) {
	h := http.Header{}
	for k, v := range vals {
		s, err := v.Resolve(cfg.Dir(), secrets)
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", k, err)
		}
		h.Set(k, s)
	}
	return h, nil
}
