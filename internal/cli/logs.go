package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/observe"
)

func newLogsCmd(g *globals) *cobra.Command {
	var (
		namespace, selector, grep, extra string
		all, follow, timestamps          bool
		clusters                         []string
		since                            time.Duration
		limit                            int
	)
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Search or follow the logs of the fleet's pods, across clusters",
		Long: `The members' log collectors (convoy log-collector, on every real node) send every container's lines to
the hub's log store (VictoriaLogs), each with its cluster, region, namespace, pod and
container. convoy logs searches them, or follows them as they come (-f), and marks each line
with its cluster: [CLUSTER NAMESPACE/POD/CONTAINER] LINE.

Without -n, every namespace is searched (-A says so explicitly). The hub serves the store's
LogsQL API at ` + v1alpha1.LogsPrefix + `/select/logsql/ for any VictoriaLogs client; RBAC decides
who may read (ClusterRole ` + v1alpha1.LogsReaderRole + `).`,
		Example: `  convoy logs -n demo -l app=web --grep GET
  convoy logs -n demo --cluster us-east --since 1h
  convoy logs -A -f --grep 'error|panic'
  convoy logs -n shop --query 'level:=error AND -path:="/healthz"'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all && namespace != "" {
				return usageError("-n and -A: give one namespace, or all of them")
			}
			if since < 0 {
				return usageError("--since %s: give a positive duration, such as 10m", since)
			}
			if limit <= 0 {
				return usageError("--limit %d: give a positive number of lines", limit)
			}
			for _, c := range clusters {
				if strings.TrimSpace(c) == "" {
					return usageError("--cluster: give a cluster's name")
				}
			}
			q := observe.LogQuery{Namespace: namespace, Selector: selector, Clusters: clusters, Grep: grep}
			if !follow {
				q.Since = since
			}
			filter, err := q.Filter()
			if err != nil {
				return usageError("%v", err)
			}
			if extra = strings.TrimSpace(extra); extra != "" {
				// The store parses it: what it refuses comes back with its reason.
				// On a line of its own: a # in it comments out the rest of its line only.
				filter += " (" + extra + "\n)"
			}
			query := filter + " | fields " + strings.Join(observe.LogFields, ", ")
			cfg, err := g.restConfig()
			if err != nil {
				return err
			}
			p := linePrinter{w: g.streams.Out, timestamps: timestamps}
			if follow {
				return followLogs(cmd, cfg, query, p)
			}
			form := url.Values{"query": {query}, "limit": {strconv.Itoa(limit)}}
			body, err := logsRequest(cmd, cfg, http.MethodPost, v1alpha1.LogsPrefix+"/select/logsql/query", form)
			if err != nil {
				return err
			}
			defer body.Close()
			var lines []map[string]string
			err = readLogLines(body, func(l map[string]string) error { lines = append(lines, l); return nil })
			if err != nil {
				return err
			}
			// The store gives the most recent lines, in no set order: oldest first, as logs read.
			// (Times are compared as times: RFC 3339 without trailing zeros does not sort as text.)
			slices.SortStableFunc(lines, func(a, b map[string]string) int { return lineTime(a).Compare(lineTime(b)) })
			for _, l := range lines {
				p.print(l)
			}
			if len(lines) == 0 {
				fmt.Fprintln(g.streams.ErrOut, "No lines.")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "", "the pods' namespace (default: every namespace)")
	f.BoolVarP(&all, "all-namespaces", "A", false, "every namespace (the default)")
	f.StringVarP(&selector, "selector", "l", "", "the pods' label selector, such as app=web or 'tier in (web,api)'")
	f.StringSliceVar(&clusters, "cluster", nil, "only these clusters (repeatable, or comma-separated)")
	f.DurationVar(&since, "since", 10*time.Minute, "the lines of the last DURATION (not with -f, which starts now)")
	f.StringVar(&grep, "grep", "", "only lines that match this regular expression (RE2)")
	f.StringVar(&extra, "query", "", "a LogsQL filter the lines must match too, such as 'error AND -healthz' (https://docs.victoriametrics.com/victorialogs/logsql/)")
	f.BoolVarP(&follow, "follow", "f", false, "follow new lines as they come, until interrupted")
	f.BoolVar(&timestamps, "timestamps", false, "print each line's time")
	f.IntVar(&limit, "limit", 1000, "at most this many lines, the most recent (not with -f)")
	return cmd
}

// followLogs prints the lines that match query as the store takes them, from its live tail,
// until the command is interrupted. A tail that ends (the hub restarted) starts again, going
// back to a second before the newest line printed, and the lines printed before are not
// printed again; while the hub does not answer, it tries again every two seconds.
func followLogs(cmd *cobra.Command, cfg *rest.Config, query string, p linePrinter) error {
	// The tail tells lines apart per stream (a container in a cluster): it needs _stream_id.
	query += ", _stream_id"
	var newest time.Time
	printed := map[string]time.Time{} // lines printed lately, by their identity, with their time
	for started := false; ; {
		form := url.Values{"query": {query}, "watch": {"true"},
			// The store looks for new lines four times a second, up to now (its default
			// stops 5 s short of now); each look goes back 5 s, so a line that reaches the
			// store a little later than its own time is still shown.
			"offset": {"0s"}, "refresh_interval": {"250ms"}, "start_offset": {"1ms"}}
		if !newest.IsZero() {
			form.Set("start_offset", strconv.FormatInt(time.Since(newest).Milliseconds()+1000, 10)+"ms")
		}
		body, err := logsRequest(cmd, cfg, http.MethodGet, v1alpha1.LogsTailPath, form)
		switch {
		case cmd.Context().Err() != nil:
			return nil // interrupted
		case err != nil && !started:
			return err
		case err != nil:
			fmt.Fprintf(cmd.ErrOrStderr(), "the hub's live tail: %v; trying again\n", err)
		default:
			started = true
			err = readLogLines(body, func(l map[string]string) error {
				key := l["_stream_id"] + "\x00" + l["_time"] + "\x00" + l["_msg"]
				if _, dup := printed[key]; dup {
					return nil // printed before the tail started again
				}
				at := lineTime(l)
				printed[key] = at
				if at.After(newest) {
					newest = at
				}
				p.print(l)
				if len(printed) > 4096 {
					forget(printed, newest)
				}
				return nil
			})
			body.Close()
			if cmd.Context().Err() != nil {
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "the hub's live tail ended (%v); starting it again\n", err)
		}
		forget(printed, newest)
		select {
		case <-cmd.Context().Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// forget drops the lines printed more than 10 s before newest: only lines a restarted tail can
// give again (it goes back a second before newest) need remembering.
func forget(printed map[string]time.Time, newest time.Time) {
	for k, at := range printed {
		if newest.Sub(at) > 10*time.Second {
			delete(printed, k)
		}
	}
}

// lineTime is a line's _time (zero if it has none).
func lineTime(l map[string]string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, l["_time"])
	return t
}

type linePrinter struct {
	w          io.Writer
	timestamps bool
}

func (p linePrinter) print(l map[string]string) {
	var b strings.Builder
	if p.timestamps {
		b.WriteString(l["_time"])
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "[%s %s/%s/%s] %s\n", l[observe.LogFieldCluster], l[observe.LogFieldNamespace], l[observe.LogFieldPod],
		l[observe.LogFieldContainer], strings.TrimRight(l["_msg"], "\n"))
	_, _ = io.WriteString(p.w, b.String())
}

// readLogLines calls each for every line of the store's answer (JSON lines, one object of
// string fields each).
func readLogLines(r io.Reader, each func(map[string]string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var l map[string]string
		if err := json.Unmarshal(raw, &l); err != nil {
			return fmt.Errorf("the log store's answer: %v: %.200s", err, raw)
		}
		if err := each(l); err != nil {
			return err
		}
	}
	return sc.Err()
}

// logsRequest sends a request to the hub's log API and returns the body of a 200 answer; any
// other answer is an error that says why, with the store's message for a query it refused.
func logsRequest(cmd *cobra.Command, cfg *rest.Config, method, path string, form url.Values) (io.ReadCloser, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	u := strings.TrimSuffix(cfg.Host, "/") + path
	var body io.Reader
	if method == http.MethodGet {
		u += "?" + form.Encode()
	} else {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, hubError(cfg.Host, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return nil, fmt.Errorf("the log store refused the query: %s", strings.TrimPrefix(observe.StoreMessage(statusMessage(raw)), "the log store: "))
	case http.StatusForbidden:
		return nil, fmt.Errorf("the hub does not let you read the fleet's logs: %s; a cluster-admin can bind you the ClusterRole %s", strings.TrimSpace(statusMessage(raw)), v1alpha1.LogsReaderRole)
	case http.StatusServiceUnavailable, http.StatusNotFound:
		return nil, fmt.Errorf("the hub serves no log API now (%s: %s); the hub's /status (http://127.0.0.1:9440/status by default) shows whether its log store runs", resp.Status, strings.TrimSpace(statusMessage(raw)))
	}
	return nil, fmt.Errorf("logs: %s: %s", resp.Status, strings.TrimSpace(statusMessage(raw)))
}
