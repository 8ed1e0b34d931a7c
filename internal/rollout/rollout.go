// Package rollout decides, wave by wave, which clusters get a Placement's new revision. It is a
// pure state machine: the strategy, the clusters' observed state, the state persisted in the
// Placement's status, the user's commands and the time go in; the next state, the revision each
// cluster should run, the events to record and when to look again come out. It never calls a
// client or reads a clock: a wave's metric gate comes in as the reading the caller took
// (Metric, Reading). It also owns the state's persisted form (FromStatus, Status).
// internal/plan steps it for Placements and internal/profile for ClusterProfiles' update runs;
// internal/controller/profile reads and writes its persisted form.
package rollout

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// The phases, as the Placement's status names them.
const (
	Progressing        = v1alpha1.RolloutProgressing
	Soaking            = v1alpha1.RolloutSoaking
	WaitingForApproval = v1alpha1.RolloutWaitingForApproval
	Paused             = v1alpha1.RolloutPaused
	Aborted            = v1alpha1.RolloutAborted
	Complete           = v1alpha1.RolloutComplete
)

// Wave is one ordered group of clusters.
type Wave struct {
	Name     string
	Clusters []string
	// MaxUnavailable is how many clusters of the wave may be not Available (or lost) while it
	// is updated, and still let it pass.
	MaxUnavailable int
	Soak           time.Duration
	// RequireApproval holds the wave until the user approves it.
	RequireApproval bool
	// Gate describes the wave's extra condition, if any, for messages; the caller folds it
	// into each cluster's Available.
	Gate string
	// Metric is the wave's metric gate, if any, with its reading at the time of the step.
	Metric *Metric
}

// Metric is a wave's metric gate: a query of the fleet metrics store whose value must stay at
// or below Max while the wave soaks. It is judged from Delay after the wave passed its health
// gate (so that the query's window holds the new revision's samples only) until the soak ends;
// a value above Max pauses the rollout, and the soak does not end before one reading at or
// below Max, taken after Delay. A gate that cannot be read (or reads no data) holds the wave,
// and pauses the rollout once that has lasted the progress deadline past the soak's end.
type Metric struct {
	// Name describes the gate in messages: its query, with the wave's clusters in it (cut
	// short by the caller if long).
	Name  string
	Max   float64
	Delay time.Duration
	// Reading is the query's value now, as the caller read it.
	Reading Reading
}

// Reading is one evaluation of a metric gate's query.
type Reading struct {
	// Taken is false when the caller has not read the query for this step (the wave became
	// the current one in this very step): the gate waits for the next step.
	Taken bool
	// Err says why the query could not be read (the store down, an invalid query).
	Err string
	// Empty is true when the query returned nothing.
	Empty bool
	Value float64
}

// MetricInterval is how often a soaking wave's metric gate is read again.
const MetricInterval = 10 * time.Second

// Strategy is the rollout's shape.
type Strategy struct {
	Waves []Wave
	// ProgressDeadline is how long a wave may take to pass its gate before the rollout pauses
	// itself.
	ProgressDeadline time.Duration
}

// Cluster is what is observed of one cluster.
type Cluster struct {
	Name string
	// Revision is the revision its Work carries now.
	Revision string
	// Available is true when the member reports the Work's resources Available at Revision.
	Available bool
	// Lost is true when the cluster is Unreachable or not Ready.
	Lost bool
	// Unknown is true when the hub does not know yet how a reachable cluster is: a restarted
	// hub whose agent has not reported again (what is stored of its Work may be behind what
	// the agent reported to the hub before). It is neither Available nor a regression: a gate
	// counts it as not Available (within the wave's budget, as a lost cluster), a soak does
	// not finish while it is beyond the budget, and no wave is paused for it, by health or by
	// the progress deadline.
	Unknown bool
}

// State is persisted in the Placement's status between decisions.
type State struct {
	// Target is the revision being rolled out; Stable the last one that completed.
	Target, Stable string
	Phase          v1alpha1.RolloutPhase
	Wave           int
	WaveStarted    time.Time
	SoakStarted    time.Time
	Message        string
}

// Commands are what the user asked for. Pause holds the rollout for as long as it is set;
// Resume (given once) also lifts a pause the rollout made itself.
type Commands struct {
	Pause, Resume, Abort bool
	// Approved is the highest wave index the user approved.
	Approved int
	// For names the revision Abort and Approved were given for; they apply only while that
	// revision is the target, so that neither carries over to a later rollout. Empty: the
	// target, whatever it is.
	For string
}

// Decision is the outcome of one step.
type Decision struct {
	State State
	// Revisions says which revision each cluster should run.
	Revisions map[string]string
	Events    []string
	// RecheckAfter is when the decision changes by itself; 0 if it does not.
	RecheckAfter time.Duration
}

// Step advances the rollout. latest is the revision of the templates as they are now.
func Step(s Strategy, st State, latest string, clusters []Cluster, cmd Commands, now time.Time) Decision {
	d := Decision{State: st}
	by := map[string]Cluster{}
	for _, c := range clusters {
		by[c.Name] = c
	}
	waves := resolve(s.Waves, clusters)
	ev := func(format string, args ...any) { d.Events = append(d.Events, fmt.Sprintf(format, args...)) }

	switch {
	case st.Target == "":
		// First sight: what runs now is stable.
		d.State = State{Target: latest, Stable: latest, Phase: Complete}
	case latest != st.Target && st.Phase == Aborted && latest == st.Stable:
		// The aborted revision's templates were replaced by the stable ones (rollout undo):
		// every cluster runs them already.
		d.State = State{Target: latest, Stable: latest, Phase: Complete, Message: fmt.Sprintf("revision %s runs in every wave", latest)}
		ev("the templates are those of the stable revision %s again; the aborted rollout of %s ends", latest, st.Target)
	case latest != st.Target:
		// A new revision: it rolls out from the stable one, whatever happened to the one
		// before (an aborted revision never became stable).
		prevStable := st.Stable
		if st.Phase == Complete {
			prevStable = st.Target
		}
		d.State = State{Target: latest, Stable: prevStable, Phase: Progressing, Wave: 0, WaveStarted: now}
		ev("rollout of revision %s started (stable revision %s)", latest, prevStable)
	}
	st = d.State
	if cmd.For != "" && cmd.For != st.Target {
		cmd.Abort, cmd.Approved = false, -1
	}

	if cmd.Abort && st.Phase != Aborted && st.Phase != Complete {
		st.Phase, st.Message = Aborted, "aborted: every cluster goes back to revision "+st.Stable
		ev("rollout of %s aborted; back to %s", st.Target, st.Stable)
	}
	if cmd.Pause && (st.Phase == Progressing || st.Phase == Soaking || st.Phase == WaitingForApproval) {
		st.Phase, st.Message = Paused, "paused by the user"
		ev("rollout paused by the user at wave %s", waveName(waves, st.Wave))
	}
	if !cmd.Pause && st.Phase == Paused && (cmd.Resume || st.Message == "paused by the user") {
		st.Phase, st.Message, st.WaveStarted = Progressing, "", now
		ev("rollout resumed at wave %s", waveName(waves, st.Wave))
	}

	for st.Phase == Progressing || st.Phase == Soaking || st.Phase == WaitingForApproval {
		if st.Wave >= len(waves) {
			st.Phase, st.Stable, st.Message = Complete, st.Target, fmt.Sprintf("revision %s runs in every wave", st.Target)
			ev("rollout of %s complete", st.Target)
			break
		}
		w := waves[st.Wave]
		if st.Phase == WaitingForApproval {
			if cmd.Approved < st.Wave {
				st.Message = fmt.Sprintf("wave %s waits for approval (convoy rollout approve)", w.Name)
				break
			}
			st.Phase, st.WaveStarted = Progressing, now
			ev("wave %s approved", w.Name)
		}
		// Earlier waves must stay healthy; a regression pauses the rollout.
		if bad := regressed(waves[:st.Wave], by, st.Target); bad != "" {
			st.Phase, st.Message = Paused, "health regressed: "+bad
			ev("rollout paused: %s", bad)
			break
		}
		unavailable, lost := gate(w, by, st.Target)
		if st.Phase == Progressing {
			if len(unavailable) > w.MaxUnavailable {
				if bad := known(unavailable, by); s.ProgressDeadline > 0 && now.Sub(st.WaveStarted) >= s.ProgressDeadline && len(bad) > w.MaxUnavailable {
					st.Phase = Paused
					gate := ""
					if w.Gate != "" {
						gate = " (with " + w.Gate + ")"
					}
					st.Message = fmt.Sprintf("wave %s not Available%s within %s: %s", w.Name, gate, s.ProgressDeadline, strings.Join(bad, ", "))
					ev("rollout paused: %s", st.Message)
					break
				}
				need := "Available"
				if w.Gate != "" {
					need += " and " + w.Gate
				}
				st.Message = fmt.Sprintf("wave %s: waiting for %s (%s needed in all but %d)", w.Name, strings.Join(unavailable, ", "), need, w.MaxUnavailable)
				if left := st.WaveStarted.Add(s.ProgressDeadline).Sub(now); s.ProgressDeadline > 0 && left > 0 {
					d.RecheckAfter = left
				}
				break
			}
			st.Phase, st.SoakStarted = Soaking, now
			if len(lost) > 0 {
				ev("wave %s passed its gate with %s lost (within its budget of %d)", w.Name, strings.Join(lost, ", "), w.MaxUnavailable)
			} else {
				ev("wave %s passed its health gate", w.Name)
			}
		}
		if st.Phase == Soaking {
			if bad := known(unavailable, by); len(bad) > w.MaxUnavailable {
				st.Phase, st.Message = Paused, fmt.Sprintf("health regressed in wave %s while soaking: %s", w.Name, strings.Join(bad, ", "))
				ev("rollout paused: %s", st.Message)
				break
			}
			if len(unavailable) > w.MaxUnavailable {
				st.Message = fmt.Sprintf("wave %s soaking: waiting for the reports of %s", w.Name, strings.Join(unknownOf(unavailable, by), ", "))
				break
			}
			wait := st.SoakStarted.Add(w.Soak).Sub(now) // of the soak
			var held string                             // why the metric gate holds the wave
			var recheck time.Duration
			paused := false
			if m := w.Metric; m != nil {
				judged := st.SoakStarted.Add(m.Delay)
				r := m.Reading
				switch {
				case now.Before(judged):
					// Looked at again every interval meanwhile, so that the message's time
					// left stays current.
					wait, recheck = max(wait, judged.Sub(now)), min(judged.Sub(now), MetricInterval)
				case !r.Taken:
					held, recheck = "is not read yet", time.Second
				case r.Err != "" || r.Empty:
					held, recheck = "returned no data", MetricInterval
					if r.Err != "" {
						held = "cannot be read: " + r.Err
					}
					// Held past the end of the soak (or of the delay, if later) for longer
					// than the progress deadline: a reading that fails now and then while a
					// long soak lasts pauses nothing.
					if s.ProgressDeadline > 0 && now.Sub(later(judged, st.SoakStarted.Add(w.Soak))) >= s.ProgressDeadline {
						st.Phase, paused = Paused, true
						st.Message = fmt.Sprintf("wave %s: its metric gate %s %s, for %s", w.Name, m.Name, held, s.ProgressDeadline)
						ev("rollout paused: %s", st.Message)
					}
				case r.Value > m.Max:
					st.Phase, paused = Paused, true
					st.Message = fmt.Sprintf("wave %s failed its metric gate: %s = %s, above %s", w.Name, m.Name, formatValue(r.Value), formatValue(m.Max))
					ev("rollout paused: %s", st.Message)
				case wait > 0:
					recheck = MetricInterval // read it again while the soak lasts
				}
			}
			if paused {
				break
			}
			if wait > 0 || held != "" {
				if held != "" {
					st.Message = fmt.Sprintf("wave %s soaking: its metric gate %s %s", w.Name, w.Metric.Name, held)
				} else {
					st.Message = fmt.Sprintf("wave %s soaking, %s left", w.Name, wait.Round(time.Second))
				}
				d.RecheckAfter = max(wait, 0)
				if recheck > 0 && (d.RecheckAfter == 0 || recheck < d.RecheckAfter) {
					d.RecheckAfter = recheck
				}
				break
			}
			ev("wave %s done", w.Name)
			st.Wave++
			st.Phase, st.WaveStarted = Progressing, now
			if st.Wave < len(waves) && waves[st.Wave].RequireApproval && cmd.Approved < st.Wave {
				st.Phase = WaitingForApproval
			}
		}
	}
	d.State = st
	d.Revisions = revisions(waves, st)
	return d
}

// Revisions says which revision each cluster runs in state st, by the rule Step's decision ends
// with. internal/profile compares it before and after a step to see whom the step sets moving.
func Revisions(s Strategy, st State, clusters []Cluster) map[string]string {
	return revisions(resolve(s.Waves, clusters), st)
}

// revisions: waves up to the current one get the target (all of them once complete, but not a
// wave waiting for its approval); the rest, and everyone when aborted, the stable revision.
func revisions(waves []Wave, st State) map[string]string {
	out := map[string]string{}
	for i, w := range waves {
		for _, c := range w.Clusters {
			switch {
			case st.Phase == Aborted:
				out[c] = st.Stable
			case st.Phase == Complete || i < st.Wave || (i == st.Wave && st.Phase != WaitingForApproval):
				out[c] = st.Target
			default:
				out[c] = st.Stable
			}
		}
	}
	return out
}

// resolve keeps each wave's clusters that exist, in name order, and makes sure every cluster
// is in exactly one wave: a cluster in two waves stays in the first, and clusters in none form
// a last wave "rest".
func resolve(waves []Wave, clusters []Cluster) []Wave {
	seen := map[string]bool{}
	exists := map[string]bool{}
	for _, c := range clusters {
		exists[c.Name] = true
	}
	var out []Wave
	for _, w := range waves {
		nw := w
		nw.Clusters = nil
		for _, c := range w.Clusters {
			if exists[c] && !seen[c] {
				seen[c] = true
				nw.Clusters = append(nw.Clusters, c)
			}
		}
		slices.Sort(nw.Clusters)
		out = append(out, nw)
	}
	var rest []string
	for _, c := range clusters {
		if !seen[c.Name] {
			rest = append(rest, c.Name)
		}
	}
	if len(rest) > 0 {
		slices.Sort(rest)
		out = append(out, Wave{Name: "rest", Clusters: rest})
	}
	return out
}

// gate lists the wave's clusters that are not Available at the target (lost and unknown
// ones included), and the lost ones.
func gate(w Wave, by map[string]Cluster, target string) (unavailable, lost []string) {
	for _, name := range w.Clusters {
		c := by[name]
		switch {
		case c.Lost:
			unavailable = append(unavailable, name+" (lost)")
			lost = append(lost, name)
		case c.Unknown:
			unavailable = append(unavailable, name+" (unknown since the hub started)")
		case c.Revision != target || !c.Available:
			unavailable = append(unavailable, name)
		}
	}
	return unavailable, lost
}

// known keeps the entries of gate's list whose clusters' state is known.
func known(unavailable []string, by map[string]Cluster) []string {
	var out []string
	for _, u := range unavailable {
		if name, _, _ := strings.Cut(u, " "); !by[name].Unknown {
			out = append(out, u)
		}
	}
	return out
}

// unknownOf keeps the names of gate's list whose clusters' state is unknown.
func unknownOf(unavailable []string, by map[string]Cluster) []string {
	var out []string
	for _, u := range unavailable {
		if name, _, _ := strings.Cut(u, " "); by[name].Unknown {
			out = append(out, name)
		}
	}
	return out
}

// regressed names a finished wave whose clusters, reachable and at the target, stopped being
// Available beyond the wave's budget.
func regressed(done []Wave, by map[string]Cluster, target string) string {
	for _, w := range done {
		var bad []string
		for _, name := range w.Clusters {
			if c := by[name]; !c.Lost && !c.Unknown && c.Revision == target && !c.Available {
				bad = append(bad, name)
			}
		}
		if len(bad) > w.MaxUnavailable {
			return fmt.Sprintf("wave %s no longer Available in %s", w.Name, strings.Join(bad, ", "))
		}
	}
	return ""
}

// formatValue prints a metric's value in as few digits as tell it apart.
func formatValue(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func waveName(waves []Wave, i int) string {
	if i < len(waves) {
		return waves[i].Name
	}
	return fmt.Sprint(i)
}

// FromStatus reads the state a Placement's status keeps (nil: no rollout yet).
func FromStatus(rs *v1alpha1.RolloutStatus) State {
	if rs == nil {
		return State{}
	}
	st := State{Target: rs.Target, Stable: rs.Stable, Phase: rs.Phase, Wave: int(rs.Wave), Message: rs.Message}
	if rs.WaveStarted != nil {
		st.WaveStarted = rs.WaveStarted.Time
	}
	if rs.SoakStarted != nil {
		st.SoakStarted = rs.SoakStarted.Time
	}
	return st
}

// Status is the state as a Placement's status keeps it, with the name of the current wave
// ("rest" for the clusters in no wave). Times keep microseconds, so that a soak restored after
// a hub restart is not cut short.
func (s State) Status(strategy Strategy) *v1alpha1.RolloutStatus {
	rs := &v1alpha1.RolloutStatus{Target: s.Target, Stable: s.Stable, Phase: s.Phase, Wave: int32(s.Wave), Message: s.Message}
	if s.Wave < len(strategy.Waves) {
		rs.WaveName = strategy.Waves[s.Wave].Name
	} else if s.Phase != Complete {
		rs.WaveName = "rest"
	}
	if !s.WaveStarted.IsZero() {
		rs.WaveStarted = &metav1.MicroTime{Time: s.WaveStarted}
	}
	if !s.SoakStarted.IsZero() {
		rs.SoakStarted = &metav1.MicroTime{Time: s.SoakStarted}
	}
	return rs
}
