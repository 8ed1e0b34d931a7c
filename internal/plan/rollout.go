package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/rollout"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// DefaultProgressDeadline is how long a wave may take when the Placement does not say.
const DefaultProgressDeadline = 300 * time.Second

// RevisionHash names a set of templates by their content.
func RevisionHash(templates []Template) string {
	h := sha256.New()
	for _, t := range templates {
		raw, _ := t.Obj.MarshalJSON()
		h.Write([]byte(t.Key))
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// rollout steps the Placement's rollout with what the Works report, records its state, events
// and condition, and returns the revision each chosen cluster gets.
func (pl *planner) rollout(d scheduler.Decision) map[string]string {
	p, st := pl.p, &pl.out.Status
	latest := RevisionHash(pl.in.Templates)
	state := rollout.FromStatus(p.Status.Rollout)
	rev := &Revision{Hash: latest, Templates: pl.in.Templates}
	for _, k := range []string{state.Target, state.Stable} {
		if k != "" && k != latest {
			rev.Keep = append(rev.Keep, k)
		}
	}
	pl.out.Revision = rev

	spec := p.Spec.Rollout
	strategy := rollout.Strategy{ProgressDeadline: DefaultProgressDeadline}
	if s := spec.ProgressDeadlineSeconds; s != nil {
		strategy.ProgressDeadline = time.Duration(*s) * time.Second
	}
	// A wave's own gate, if it has one, is part of its clusters' being Available.
	gateOf := map[string]*v1alpha1.ConditionGate{}
	metricQueries := map[int]MetricQuery{} // by wave
	for _, w := range spec.Waves {
		wave := rollout.Wave{Name: w.Name, MaxUnavailable: int(w.MaxUnavailable), Soak: time.Duration(w.SoakSeconds) * time.Second, RequireApproval: w.RequireApproval}
		if g := w.Gate; g != nil {
			wave.Gate = fmt.Sprintf("%s %s %s=%s", g.Kind, g.Name, g.Type, gateStatus(g))
		}
		var own []string // the clusters of this wave and of no earlier one
		for _, ch := range d.Clusters {
			if ok, _ := scheduler.Matches(w.Clusters.Affinity(), pl.byName[ch.Name]); ok {
				wave.Clusters = append(wave.Clusters, ch.Name)
				if _, seen := gateOf[ch.Name]; !seen {
					gateOf[ch.Name] = w.Gate
					own = append(own, ch.Name)
				}
			}
		}
		if m := w.Metric; m != nil && len(own) > 0 {
			wave.Metric, metricQueries[len(strategy.Waves)] = metricGate(m, own, p.Namespace, pl.in.Metrics)
		}
		strategy.Waves = append(strategy.Waves, wave)
	}
	var observed []rollout.Cluster
	for _, ch := range d.Clusters {
		c := rollout.Cluster{Name: ch.Name, Lost: !ch.Healthy, Unknown: ch.Healthy && pl.in.Unconfirmed[ch.Name]}
		if w := pl.in.Works[ch.Name]; w != nil {
			// A report of a generation the Work has not reached is of content that a killed
			// hub handed to the agent and never stored (delivery.Server.Hand): what the cluster
			// runs is not known until that content is handed again or the agent is reset to
			// the stored one. Neither Available nor a regression, for a while (AheadWindow).
			if ch.Healthy && ahead(w) && pl.in.Now.Before(pl.in.Started.Add(AheadWindow)) {
				c.Unknown = true
				pl.recheckIn(aheadRecheck)
			}
			c.Revision = w.Annotations[v1alpha1.AnnotationRevision]
			c.Available = current(w) && meta.IsStatusConditionTrue(w.Status.Conditions, v1alpha1.WorkAvailable) && gateHolds(w, gateOf[ch.Name], p.Namespace)
		}
		observed = append(observed, c)
	}
	cmd := commands(p, latest, state)
	resumeToken := p.Annotations[v1alpha1.AnnotationRolloutResume]
	step := rollout.Step(strategy, state, latest, observed, cmd, pl.in.Now)
	for _, e := range step.Events {
		pl.event(corev1.EventTypeNormal, "Rollout", "Rollout", "%s", e)
	}
	next := step.State
	if next.Phase == rollout.Soaking && next.Wave < len(strategy.Waves) {
		if m := strategy.Waves[next.Wave].Metric; m != nil && !pl.in.Now.Before(next.SoakStarted.Add(m.Delay)) {
			pl.out.MetricQueries = append(pl.out.MetricQueries, metricQueries[next.Wave])
		}
	}
	st.Rollout = next.Status(strategy)
	st.Rollout.Resumed = resumeToken
	if cmd.Abort {
		st.Rollout.Aborted = p.Annotations[v1alpha1.AnnotationRolloutAbort] // handled
	} else if p.Status.Rollout != nil {
		st.Rollout.Aborted = p.Status.Rollout.Aborted
	}
	ok := next.Phase == rollout.Complete || next.Phase == rollout.Progressing || next.Phase == rollout.Soaking
	msg := next.Message
	if msg == "" {
		msg = string(next.Phase)
	}
	pl.condition(v1alpha1.PlacementRolloutProgressing, ok, string(next.Phase), msg)
	pl.recheckIn(step.RecheckAfter)
	return step.Revisions
}

// commands reads the user's one-shot rollout commands from the Placement's annotations. An
// approval ("REVISION/WAVE") and an abort ("REVISION@TOKEN") name the revision they were given
// for, and apply only to its rollout: the target as it is, or the templates' revision when they
// start a new rollout now. An abort is handled once: the status keeps the last one handled. A
// resume is a new token. Older values without a revision apply to the target.
func commands(p *v1alpha1.Placement, latest string, state rollout.State) rollout.Commands {
	cmd := rollout.Commands{Pause: p.Spec.Rollout.Paused, Approved: -1, For: state.Target}
	if state.Target != "" && latest != state.Target && !(state.Phase == rollout.Aborted && latest == state.Stable) {
		cmd.For = latest // this step starts a new rollout
	}
	approve := p.Annotations[v1alpha1.AnnotationRolloutApprove]
	rev, wave, ok := strings.Cut(approve, "/")
	if !ok {
		rev, wave = cmd.For, approve
	}
	if n, err := strconv.Atoi(wave); err == nil && rev == cmd.For {
		cmd.Approved = n
	}
	resumeToken := p.Annotations[v1alpha1.AnnotationRolloutResume]
	if resumeToken != "" && (p.Status.Rollout == nil || p.Status.Rollout.Resumed != resumeToken) {
		cmd.Resume = true
	}
	if abort := p.Annotations[v1alpha1.AnnotationRolloutAbort]; abort != "" && (p.Status.Rollout == nil || p.Status.Rollout.Aborted != abort) {
		rev, _, _ := strings.Cut(abort, "@")
		cmd.Abort = rev == cmd.For
	}
	return cmd
}

func gateStatus(g *v1alpha1.ConditionGate) string {
	if g.Status == "" {
		return "True"
	}
	return g.Status
}

// gateHolds says whether a Work's member reports the gate's condition on its resource; no gate
// always holds.
func gateHolds(w *v1alpha1.Work, g *v1alpha1.ConditionGate, namespace string) bool {
	if g == nil {
		return true
	}
	for _, r := range w.Status.Resources {
		if r.Group != g.Group || r.Kind != g.Kind || r.Name != g.Name || (r.Namespace != "" && r.Namespace != namespace) {
			continue
		}
		for _, c := range r.Conditions {
			if c.Type == g.Type {
				return c.Status == gateStatus(g)
			}
		}
	}
	return false
}

// metricGate is a wave's metric gate for the rollout engine, and its query as the store runs
// it: the PromQL with the wave's clusters (those of no earlier wave, sorted, as a regular
// expression) for $clusters and the Placement's namespace for $namespace, restricted to those
// (MetricQuery.Filter), with the reading the caller took of it, if any. Messages name the query
// cut to maxGateName. A maximum the API let through but that does not parse is read as an error.
func metricGate(m *v1alpha1.MetricGate, clusters []string, namespace string, readings map[MetricQuery]Reading) (*rollout.Metric, MetricQuery) {
	names := slices.Sorted(slices.Values(clusters))
	for i, n := range names {
		names[i] = regexp.QuoteMeta(n)
	}
	re := strings.Join(names, "|")
	mq := MetricQuery{
		Query:  strings.NewReplacer("$clusters", re, "$namespace", namespace).Replace(m.Query),
		Filter: fmt.Sprintf(`{cluster=~%q,namespace=%q}`, re, namespace),
	}
	name := mq.Query
	if len(name) > maxGateName {
		n := maxGateName
		for n > 0 && !utf8.RuneStart(name[n]) {
			n-- // not into the middle of a character
		}
		name = name[:n] + "…"
	}
	out := &rollout.Metric{Name: name, Delay: time.Duration(m.DelaySeconds) * time.Second, Reading: readings[mq]}
	limit, err := strconv.ParseFloat(m.Max, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range: ±Inf, which compares
		out.Reading = rollout.Reading{Taken: true, Err: fmt.Sprintf("max %q is not a number", m.Max)}
	}
	out.Max = limit
	return out, mq
}

// maxGateName bounds the query a rollout's messages and events quote (an event's note takes
// 1 KiB at most).
const maxGateName = 300
