package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/observe"
)

func newMetricsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Query the fleet metrics store at the hub",
		Long: `The hub keeps the fleet's metrics in a store (VictoriaMetrics) and serves its Prometheus
query API through its own API server, at ` + v1alpha1.MetricsQueryPrefix + `, with the hub's
authentication: RBAC decides who may query (ClusterRole ` + v1alpha1.MetricsReaderRole + `).
Any Prometheus client (promtool, Grafana) can use that URL too.`,
	}
	cmd.AddCommand(newMetricsQueryCmd(g))
	return cmd
}

func newMetricsQueryCmd(g *globals) *cobra.Command {
	var at, output string
	cmd := &cobra.Command{
		Use:   "query 'PROMQL'",
		Short: "Evaluate a PromQL query at one instant and print the result as a table",
		Example: `  convoy metrics query 'up'
  convoy metrics query 'sum by (cluster) (rate(http_requests_total[1m]))'
  convoy metrics query 'apiserver_request_total' --time 2026-12-01T10:00:00Z -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(args[0]) == "" {
				return usageError("the query is empty: give a PromQL expression, for example 'up'")
			}
			if output != "table" && output != "json" {
				return usageError("-o %q: use table or json", output)
			}
			form := url.Values{"query": {args[0]}}
			if at != "" {
				ts, err := time.Parse(time.RFC3339, at)
				if err != nil {
					return usageError("--time %q: use RFC 3339, for example 2026-12-01T10:00:00Z", at)
				}
				form.Set("time", strconv.FormatInt(ts.Unix(), 10))
			}
			cfg, err := g.restConfig()
			if err != nil {
				return err
			}
			raw, err := queryHub(cmd, cfg, "query", form)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err := g.streams.Out.Write(append(raw, '\n'))
				return err
			}
			res, err := observe.ParseQueryResult(raw)
			if err != nil {
				return err
			}
			printResult(g.streams.Out, res)
			return nil
		},
	}
	cmd.Flags().StringVar(&at, "time", "", "evaluate at this instant (RFC 3339; default: now)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, or json (the store's answer as it is)")
	return cmd
}

// queryHub POSTs form to the hub's metrics query API endpoint and returns the store's answer.
// A refusal by the store (invalid PromQL) is returned with the store's message.
func queryHub(cmd *cobra.Command, cfg *rest.Config, endpoint string, form url.Values) ([]byte, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	u := strings.TrimSuffix(cfg.Host, "/") + v1alpha1.MetricsQueryPrefix + "/api/v1/" + endpoint
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, hubError(cfg.Host, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return raw, nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity:
		if _, err := observe.ParseQueryResult(raw); errors.Is(err, observe.ErrStore) {
			return nil, err
		}
	case resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("the hub does not let you query its metrics store: %s; a cluster-admin can bind you the ClusterRole %s", strings.TrimSpace(statusMessage(raw)), v1alpha1.MetricsReaderRole)
	case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("the hub serves no metrics query API now (%s: %s); the hub's /status (http://127.0.0.1:9440/status by default) shows whether its metrics store runs", resp.Status, strings.TrimSpace(statusMessage(raw)))
	}
	return nil, fmt.Errorf("metrics query: %s: %s", resp.Status, strings.TrimSpace(statusMessage(raw)))
}

// statusMessage is a Kubernetes Status' message, or the body as it is.
func statusMessage(raw []byte) string {
	var st struct {
		Kind    string `json:"kind"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &st) == nil && st.Kind == "Status" {
		return st.Message
	}
	if len(raw) > 500 {
		raw = raw[:500]
	}
	return string(raw)
}

func printResult(w io.Writer, r observe.Result) {
	if len(r.Rows) == 0 {
		fmt.Fprintln(w, "No series.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(r.Columns, "\t")))
	for _, row := range r.Rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}
