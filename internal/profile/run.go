package profile

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/rollout"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

// DefaultProgressDeadline is how long one wave of an update run may take when the profile does
// not say: a cluster's nodes are upgraded one at a time.
const DefaultProgressDeadline = time.Hour

// RunCluster is what the update run observes of one cluster of the profile.
type RunCluster struct {
	// Cluster is the cluster itself: its name, labels and region choose its wave, and
	// spec.profile.revision, when set, pins it: the run leaves it out and its target is its pin.
	Cluster *v1alpha1.Cluster
	// Revision is the profile revision the cluster conforms to now (0: none yet), Conformant
	// whether it matches the revision it is held to.
	Revision   int64
	Conformant bool
	// Lost: Unreachable or not Ready. Blocked: why its upgrade cannot go on (a
	// PodDisruptionBudget blocking a drain, a node that did not come back), empty if not
	// blocked.
	Lost    bool
	Blocked string
}

// pin is the revision the cluster is pinned to, if any.
func (c RunCluster) pin() (int64, bool) {
	if p := c.Cluster.Spec.Profile; p != nil && p.Revision != nil {
		return *p.Revision, true
	}
	return 0, false
}

// RunInput is what one step of an update run takes.
type RunInput struct {
	Update v1alpha1.ProfileUpdate
	// State is the run as the profile's status keeps it: rollout.FromStatus(status.run).
	State rollout.State
	// WaveName is the name of the run's current wave as the status keeps it (status.run.waveName):
	// State.Wave is an index, which shifts when a cluster before it comes, goes or moves.
	WaveName string
	// Latest is the newest revision.
	Latest   int64
	Clusters []RunCluster
	// Commands are the user's (Approved -1 when no wave is approved); Update.Paused adds
	// Pause.
	Commands rollout.Commands
	Now      time.Time
}

// RunDecision is the outcome of one step of an update run.
type RunDecision struct {
	State rollout.State
	// Strategy is the one the step used, so that the caller can write State.Status(Strategy).
	Strategy rollout.Strategy
	// Targets maps each cluster's name to the revision it is to run now (a pinned cluster: its
	// pin).
	Targets map[string]int64
	Events  []string
	// RecheckAfter is when the decision changes by itself; 0 if it does not.
	RecheckAfter time.Duration
}

// Run steps the update run with rollout.Step. Revisions are their numbers in decimal; a cluster
// is Available at revision R when it conforms to R. Without waves, each cluster is a wave of its
// own, in name order: the run goes cluster by cluster. On top of the rollout engine:
//
//   - The run stays on its wave by name (WaveName), wherever clusters coming, going or moving
//     put it; when the wave is gone, it goes on at the first wave not yet at the target.
//   - A cluster that runs the target keeps it, wherever its wave is, until an abort.
//   - Outside every maintenance window, no cluster starts moving: a step that would start a run
//     or a wave is not taken (the state and targets stay as they were, but a lifted pause stays
//     lifted; clusters already moving go on) and the run says when the next window opens.
//   - A blocked cluster of the current wave pauses the run, naming what blocks it; resume goes
//     on as after any pause.
//   - Pinned clusters are left out of the run and held to their pin.
//
// The waves' condition and metric gates are a Placement's: an update run has no resources of
// its own to gate on, and ignores them.
func Run(in RunInput) RunDecision {
	var clusters []RunCluster // those the run moves: not pinned
	out := RunDecision{Targets: map[string]int64{}}
	for _, c := range in.Clusters {
		if pin, ok := c.pin(); ok {
			out.Targets[c.Cluster.Name] = pin
			continue
		}
		clusters = append(clusters, c)
	}
	slices.SortFunc(clusters, func(a, b RunCluster) int { return strings.Compare(a.Cluster.Name, b.Cluster.Name) })

	out.Strategy = strategy(in.Update, clusters)
	observed := make([]rollout.Cluster, len(clusters))
	for i, c := range clusters {
		observed[i] = rollout.Cluster{Name: c.Cluster.Name, Revision: revision(c.Revision), Available: c.Conformant, Lost: c.Lost}
	}
	st, moved := follow(in.State, in.WaveName, out.Strategy.Waves, observed, in.Now)
	cmd := in.Commands
	cmd.Pause = cmd.Pause || in.Update.Paused
	step := rollout.Step(out.Strategy, st, revision(in.Latest), observed, cmd, in.Now)
	next, targets := step.State, keep(step.State, step.Revisions, observed)
	out.Events, out.RecheckAfter = slices.Concat(moved, step.Events), step.RecheckAfter

	if open, opens := InWindow(in.Update.MaintenanceWindows, in.Now); !open && st.Target != "" && next.Phase != rollout.Aborted {
		// Abort is let through: the user asked for the clusters to go back. A first step
		// (no target yet) moves nothing: the clusters run what they were built from.
		before := keep(st, rollout.Revisions(out.Strategy, st, observed), observed)
		if starts(before, targets) {
			held := st
			out.Events = moved // the step is not taken
			if st.Phase == rollout.Paused && next.Phase != rollout.Paused && next.Target == st.Target {
				// The step lifted the run's pause (a resume, or spec.update.paused unset):
				// that stands, else the run would wait for a resume the user already gave
				// (Step lifts by itself only its own "paused by the user"). A new run
				// starting lifts nothing: it waits for the window.
				held.Phase, held.WaveStarted = rollout.Progressing, in.Now
				out.Events = append(out.Events, "update run resumed")
			}
			next, targets = held, before
			next.Message = "waiting for the maintenance window (no window in spec.update.maintenanceWindows can open; correct them)"
			out.RecheckAfter = 0
			if !opens.IsZero() {
				next.Message = fmt.Sprintf("waiting for the maintenance window (opens at %s)", opens.Format(time.RFC3339))
				out.RecheckAfter = opens.Sub(in.Now)
			}
			if st.Message != next.Message {
				out.Events = append(out.Events, "update run "+next.Message)
			}
		}
	}

	if next.Phase == rollout.Progressing || next.Phase == rollout.Soaking {
		if c, ok := blocked(clusters, out.Strategy.Waves, next.Wave); ok {
			next.Phase, next.Message = rollout.Paused, fmt.Sprintf("cluster %s: %s", c.Cluster.Name, c.Blocked)
			out.Events = append(out.Events, "update run paused: "+next.Message)
			out.RecheckAfter = 0 // until the user resumes it
		}
	}

	out.State = next
	for name, r := range targets {
		// The revisions are ours (decimal numbers); one that is not was edited into the
		// status by hand, and its cluster is given no target rather than a wrong one.
		if n, err := strconv.ParseInt(r, 10, 64); err == nil {
			out.Targets[name] = n
		}
	}
	return out
}

// strategy is the rollout's shape for the clusters the run moves (sorted by name): the update's
// waves, each with its clusters that no earlier wave took and a last wave "rest" of those in
// none (as rollout.Step makes them, so that Run finds the waves Step's index points at), or
// without waves one wave per cluster.
func strategy(u v1alpha1.ProfileUpdate, clusters []RunCluster) rollout.Strategy {
	s := rollout.Strategy{ProgressDeadline: DefaultProgressDeadline}
	if d := u.ProgressDeadlineSeconds; d != nil {
		s.ProgressDeadline = time.Duration(*d) * time.Second
	}
	if len(u.Waves) == 0 {
		for _, c := range clusters {
			s.Waves = append(s.Waves, rollout.Wave{Name: c.Cluster.Name, Clusters: []string{c.Cluster.Name}})
		}
		return s
	}
	taken := map[string]bool{}
	for _, w := range u.Waves {
		wave := rollout.Wave{Name: w.Name, MaxUnavailable: int(w.MaxUnavailable), Soak: time.Duration(w.SoakSeconds) * time.Second, RequireApproval: w.RequireApproval}
		for _, c := range clusters {
			// A selector that does not parse (the API validates it) selects nothing: its
			// clusters go in the last wave rather than early.
			if ok, _ := scheduler.Matches(w.Clusters.Affinity(), schedulerCluster(c.Cluster)); ok && !taken[c.Cluster.Name] {
				taken[c.Cluster.Name] = true
				wave.Clusters = append(wave.Clusters, c.Cluster.Name)
			}
		}
		s.Waves = append(s.Waves, wave)
	}
	rest := rollout.Wave{Name: "rest"}
	for _, c := range clusters {
		if !taken[c.Cluster.Name] {
			rest.Clusters = append(rest.Clusters, c.Cluster.Name)
		}
	}
	if len(rest.Clusters) > 0 {
		s.Waves = append(s.Waves, rest)
	}
	return s
}

// schedulerCluster is what a wave's selection looks at.
func schedulerCluster(c *v1alpha1.Cluster) scheduler.Cluster {
	return scheduler.Cluster{Name: c.Name, Labels: c.Labels, Region: c.Spec.Region, Zones: c.Spec.Zones, Environment: c.Spec.Environment}
}

// revision is a revision number as the rollout engine names it; 0 (none) is no name, so that it
// never matches a target.
func revision(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

// follow puts a run in progress back on its wave, named by the status: Step knows the wave by
// its index, and a cluster created, deleted, pinned or relabelled before it shifts the index
// (one wave per cluster: creating b before c would send c, mid-upgrade, back and start b).
// When the wave is gone (its clusters deleted or pinned, the spec's waves edited), the run goes
// on at the first wave not yet at the target everywhere, which starts as Step starts a wave;
// the event says so.
func follow(st rollout.State, name string, waves []rollout.Wave, observed []rollout.Cluster, now time.Time) (rollout.State, []string) {
	switch st.Phase {
	case rollout.Progressing, rollout.Soaking, rollout.WaitingForApproval, rollout.Paused:
	default: // Complete or Aborted: the index no longer chooses anyone's revision
		return st, nil
	}
	if name == "" { // a status written before it kept the name
		return st, nil
	}
	if i := slices.IndexFunc(waves, func(w rollout.Wave) bool { return w.Name == name }); i >= 0 {
		st.Wave = i
		return st, nil
	}
	done := map[string]bool{}
	for _, c := range observed {
		done[c.Name] = c.Revision == st.Target && c.Available
	}
	st.Wave = 0
	for st.Wave < len(waves) && !slices.ContainsFunc(waves[st.Wave].Clusters, func(c string) bool { return !done[c] }) {
		st.Wave++
	}
	if st.Phase != rollout.Paused { // a pause holds until resumed, whatever the wave
		st.Phase, st.WaveStarted, st.SoakStarted = rollout.Progressing, now, time.Time{}
		if st.Wave < len(waves) && waves[st.Wave].RequireApproval {
			st.Phase = rollout.WaitingForApproval // Step lets it through if approved
		}
	}
	next := "it ends: every wave runs the target"
	if st.Wave < len(waves) {
		next = "it goes on at wave " + waves[st.Wave].Name
	}
	return st, []string{fmt.Sprintf("update run: wave %s no longer exists; %s", name, next)}
}

// keep leaves a cluster that runs the target at the target: a wave index moved past it (a
// cluster joining before it, a label moving it to a later wave) is no reason to take it back to
// the stable revision; an abort is.
func keep(st rollout.State, targets map[string]string, observed []rollout.Cluster) map[string]string {
	if st.Target == "" || st.Phase == rollout.Aborted {
		return targets
	}
	for _, c := range observed {
		if c.Revision == st.Target && c.Available {
			targets[c.Name] = st.Target
		}
	}
	return targets
}

// starts says whether a step from targets before to targets after sets a cluster moving: gives
// one a revision it was not given before.
func starts(before, after map[string]string) bool {
	for c, r := range after {
		if before[c] != r {
			return true
		}
	}
	return false
}

// blocked finds the first cluster (by name) of wave i that is blocked.
func blocked(clusters []RunCluster, waves []rollout.Wave, i int) (RunCluster, bool) {
	if i >= len(waves) {
		return RunCluster{}, false
	}
	for _, c := range clusters {
		if c.Blocked != "" && slices.Contains(waves[i].Clusters, c.Cluster.Name) {
			return c, true
		}
	}
	return RunCluster{}, false
}
