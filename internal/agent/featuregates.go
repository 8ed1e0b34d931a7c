package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
)

const (
	// featureGatesEvery is how often the agent reads its member API server's metrics for the
	// enabled feature gates: they are large, and the gates change only with a restart.
	featureGatesEvery = time.Minute
	// featureMetric is the API server's metric of its feature gates: 1 for an enabled one.
	featureMetric = "kubernetes_feature_enabled"
)

// errNoFeatureMetric is a metrics answer with no featureMetric: it says nothing of the gates.
var errNoFeatureMetric = errors.New("the API server's metrics have no " + featureMetric)

// featureGates are the member API server's enabled feature gates as last read. It fails
// static: when a read fails (a 403, a timeout, an answer without the metric), they stay as
// they were, nil until the first read that worked.
type featureGates struct {
	mu      sync.Mutex
	tried   time.Time // the last read, whether it worked or not
	enabled []string
}

// get reads the gates again if featureGatesEvery has passed since the last read, and returns
// them as last known.
func (g *featureGates) get(ctx context.Context, cs kubernetes.Interface) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.tried.IsZero() || time.Since(g.tried) >= featureGatesEvery {
		g.tried = time.Now()
		if enabled, err := readFeatureGates(ctx, cs); err == nil {
			g.enabled = enabled
		}
	}
	return slices.Clone(g.enabled)
}

// readFeatureGates reads the enabled feature gates from the API server's /metrics.
func readFeatureGates(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").
		SetHeader("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain))).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the API server's metrics: %w", err)
	}
	defer func() { _ = body.Close() }()
	return parseFeatureGates(body)
}

// parseFeatureGates reads Prometheus' text format and returns the names of the feature gates
// whose featureMetric is 1, sorted. Only featureMetric's lines are kept and parsed (with
// expfmt), so an API server's metrics of several megabytes cost little memory. An answer
// without the metric is errNoFeatureMetric, and any error means the gates are not known.
func parseFeatureGates(r io.Reader) ([]string, error) {
	var kept bytes.Buffer
	br := bufio.NewReader(r)
	for {
		line, err := readLine(br)
		if isFeatureLine(line) {
			kept.Write(line)
			kept.WriteByte('\n')
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the API server's metrics: %w", err)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(&kept)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", featureMetric, err)
	}
	family := families[featureMetric]
	if family == nil {
		return nil, errNoFeatureMetric
	}
	var enabled []string
	for _, m := range family.GetMetric() {
		v := m.GetGauge().GetValue()
		if m.GetGauge() == nil {
			v = m.GetUntyped().GetValue()
		}
		if v != 1 {
			continue
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == "name" && l.GetValue() != "" {
				enabled = append(enabled, l.GetValue())
			}
		}
	}
	slices.Sort(enabled)
	enabled = slices.Compact(enabled)
	// The inventory holds at most maxGates (the API's bound, about three times the gates an
	// API server has today): past it the list is not known to be whole, which fails static.
	if len(enabled) > maxGates {
		return nil, fmt.Errorf("the API server has %d feature gates on, more than the %d an inventory holds", len(enabled), maxGates)
	}
	return enabled, nil
}

// maxGates is Inventory.EnabledFeatureGates' MaxItems.
const maxGates = 512

// maxLine is the longest line parseFeatureGates looks at; the rest of a longer one is skipped
// (no line of featureMetric is that long).
const maxLine = 64 << 10

// readLine is the next line without its newline, cut at maxLine; io.EOF after the last.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line) < maxLine {
			line = append(line, chunk[:min(len(chunk), maxLine-len(line))]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

// isFeatureLine says whether a line of the text format is a sample, HELP or TYPE of
// featureMetric.
func isFeatureLine(line []byte) bool {
	s := bytes.TrimLeft(line, " \t")
	if rest, ok := bytes.CutPrefix(s, []byte(featureMetric)); ok {
		return len(rest) > 0 && (rest[0] == '{' || rest[0] == ' ' || rest[0] == '\t')
	}
	comment, ok := bytes.CutPrefix(s, []byte("#"))
	if !ok {
		return false
	}
	f := bytes.Fields(comment)
	return len(f) >= 2 && (string(f[0]) == "HELP" || string(f[0]) == "TYPE") && string(f[1]) == featureMetric
}
