package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alize-eple/alize/controller/api"
	"github.com/spf13/cobra"
)

// client is the operators' side: the controller's address, the bearer
// token, the CA to trust, and how to print.
type client struct {
	stdin     io.Reader
	stdout    io.Writer
	url       string
	tokenFile string
	caFile    string
	stateDir  string
	json      bool
	http      *http.Client
}

func (c *client) flags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&c.url, "controller", envOr("ALIZE_CONTROLLER", defaultController), "controller URL ($ALIZE_CONTROLLER)")
	f.StringVar(&c.tokenFile, "token-file", os.Getenv("ALIZE_TOKEN_FILE"), "file holding the operator token ($ALIZE_TOKEN_FILE; or the token in $ALIZE_TOKEN)")
	f.StringVar(&c.caFile, "ca", os.Getenv("ALIZE_CA"), "the controller's CA certificate ($ALIZE_CA; default STATE/ca/ca.crt when readable)")
	f.StringVar(&c.stateDir, "state-dir", defaultStateDir, "the controller's state directory, for a local CA and the first admin token")
	f.BoolVar(&c.json, "json", false, "print JSON")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (c *client) token() (string, error) {
	if t := os.Getenv("ALIZE_TOKEN"); t != "" {
		return strings.TrimSpace(t), nil
	}
	path := c.tokenFile
	if path == "" {
		path = filepath.Join(c.stateDir, "initial-admin.token")
		if _, err := os.Stat(path); err != nil {
			return "", errors.New("no operator token: set $ALIZE_TOKEN or --token-file")
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *client) httpClient() (*http.Client, error) {
	if c.http != nil {
		return c.http, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	caFile := c.caFile
	if caFile == "" {
		if p := filepath.Join(c.stateDir, "ca", "ca.crt"); fileReadable(p) {
			caFile = p
		}
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	c.http = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: cfg}}
	return c.http, nil
}

func fileReadable(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// do calls an operator route: in is JSON, or raw bytes sent as CSV; the
// answer is decoded into out (or kept raw in a *[]byte).
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	token, err := c.token()
	if err != nil {
		return err
	}
	hc, err := c.httpClient()
	if err != nil {
		return err
	}
	var body io.Reader
	ctype := api.ContentTypeJSON
	switch in := in.(type) {
	case nil:
	case []byte:
		body, ctype = bytes.NewReader(in), "text/csv"
	default:
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.url, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxResponseBody))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var eb api.ErrorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
			eb.Error.Status = resp.StatusCode
			return eb.Error
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	switch out := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*out = b
		return nil
	}
	return json.Unmarshal(b, out)
}

// print prints v as JSON with --json, else with human.
func (c *client) print(v any, human func(w io.Writer)) error {
	if c.json {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

func date(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// printPlan prints what a change does, or would do, to which servers.
func (c *client) printPlan(p *api.Plan) error {
	return c.print(p, func(w io.Writer) {
		verb := "changed"
		if p.DryRun {
			verb = "would change"
		}
		fmt.Fprintf(w, "%d servers concerned, %d %s, %d failing\n", p.Touched, p.Changed, verb, p.Failed)
		for _, s := range p.Servers {
			switch {
			case s.Error != "":
				fmt.Fprintf(w, "  %s\t(%s)\tFAILS: %s\n", s.ServerID, s.UAI, strings.ReplaceAll(s.Error, "\n", "; "))
			case len(s.Modules) == 0:
				fmt.Fprintf(w, "  %s\t(%s)\tsigned again%s\n", s.ServerID, s.UAI, serial(s.Serial))
			default:
				for _, m := range s.Modules {
					what := m.Change + " " + m.Module
					switch m.Change {
					case api.PlanAdd:
						what += " " + m.ToVersion
					case api.PlanRemove:
						what += " " + m.FromVersion
					case api.PlanUpdate:
						if m.FromVersion != m.ToVersion {
							what += " " + m.FromVersion + " → " + m.ToVersion
						} else {
							what += " " + m.ToVersion + " (new values)"
						}
					}
					fmt.Fprintf(w, "  %s\t(%s)\t%s%s\n", s.ServerID, s.UAI, what, serial(s.Serial))
				}
			}
		}
		if p.Refused {
			fmt.Fprintf(w, "REFUSED: the manifests of %d servers that build today would no longer build\n", p.Failed)
		}
		if p.DryRun {
			fmt.Fprintln(w, "dry run: nothing was changed")
		}
	})
}

func serial(n uint64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("\t[serial %d]", n)
}
