package profile

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/rollout"
	"github.com/convoy-dev/convoy/internal/transcript"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// t0 is the transcripts' time zero: a Monday, midnight UTC.
var t0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// TestTranscripts runs the update-run transcripts in testdata/ (see internal/transcript for
// their form). Commands:
//
//	update [deadline=DURATION] [paused]   the profile's spec.update, then one line each of:
//	  wave NAME [names=a,b] [regions=r] [labels=k=v,...] [max=N] [soak=DURATION] [approval]
//	  window [days=Sat,Sun] start=HH:MM hours=N
//	cluster NAME [region=R] [labels=k=v,...] [pin=N]    (any number of lines)
//	delete NAME                           the cluster is gone
//	observe NAME [rev=N] [conformant] [lost] [blocked=TEXT]
//	                                      (any number of lines; blocked= takes the rest of the line)
//	step at=DURATION latest=N [pause] [resume] [abort] [approved=N]   at: time since t0, a Monday
//	restart                               forget everything but the state the status keeps
//	spec, member [unobserved], diff       a spec's default RBAC and admission policies against a
//	                                      member's objects (objects_test.go)
//
// The run's state and targets carry from one step to the next, as the profile's status does.
// go test -run TestTranscripts -update rewrites the expected output; review the diff.
func TestTranscripts(t *testing.T) {
	transcript.Run(t, *update, func(t *testing.T) func([]string) string {
		var (
			upd      v1alpha1.ProfileUpdate
			state    rollout.State
			strategy rollout.Strategy
			waveName string // status.run.waveName
			clusters = map[string]RunCluster{}
			objects  objectTranscript // spec, member and diff (objects_test.go)
		)
		return func(input []string) string {
			cmd, args := parse(input[0])
			switch cmd {
			case "update":
				upd = v1alpha1.ProfileUpdate{}
				if d, ok := args["deadline"]; ok {
					secs := int32(dur(t, d) / time.Second)
					upd.ProgressDeadlineSeconds = &secs
				}
				_, upd.Paused = args["paused"]
				for _, l := range input[1:] {
					kind, a := parse(l)
					switch kind {
					case "wave":
						w := v1alpha1.RolloutWave{Name: a["name"], MaxUnavailable: int32(num(t, a["max"])), SoakSeconds: int32(dur(t, a["soak"]) / time.Second)}
						w.Clusters.Names = list(a["names"])
						w.Clusters.Regions = list(a["regions"])
						if l := labels(a["labels"]); l != nil {
							w.Clusters.LabelSelector = &metav1.LabelSelector{MatchLabels: l}
						}
						_, w.RequireApproval = a["approval"]
						upd.Waves = append(upd.Waves, w)
					case "window":
						upd.MaintenanceWindows = append(upd.MaintenanceWindows, v1alpha1.MaintenanceWindow{Days: list(a["days"]), Start: a["start"], Hours: int32(num(t, a["hours"]))})
					default:
						t.Fatalf("transcript: update takes wave and window lines, not %q", l)
					}
				}
				return fmt.Sprintf("waves: %d, windows: %d, paused: %t", len(upd.Waves), len(upd.MaintenanceWindows), upd.Paused)
			case "cluster":
				for _, l := range input {
					_, a := parse(l)
					c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: a["name"], Labels: labels(a["labels"])}}
					c.Spec.Region = a["region"]
					c.Spec.Profile = &v1alpha1.ProfileRef{Name: "p"}
					if p, ok := a["pin"]; ok {
						pin := int64(num(t, p))
						c.Spec.Profile.Revision = &pin
					}
					rc := clusters[c.Name] // what was observed of it stays
					rc.Cluster = c
					clusters[c.Name] = rc
				}
				return "ok"
			case "observe":
				for _, l := range input {
					l, block, _ := strings.Cut(l, " blocked=")
					_, a := parse(l)
					rc, ok := clusters[a["name"]]
					if !ok {
						t.Fatalf("transcript: observe %s before cluster %s", a["name"], a["name"])
					}
					rc.Revision, rc.Blocked = int64(num(t, a["rev"])), block
					_, rc.Conformant = a["conformant"]
					_, rc.Lost = a["lost"]
					clusters[a["name"]] = rc
				}
				return "ok"
			case "delete":
				delete(clusters, args["name"])
				return "ok"
			case "restart":
				// Only the state survives a hub restart, as the profile's status keeps it.
				raw, err := json.Marshal(state.Status(strategy))
				if err != nil {
					t.Fatal(err)
				}
				var rs v1alpha1.RolloutStatus
				if err := json.Unmarshal(raw, &rs); err != nil {
					t.Fatal(err)
				}
				state, strategy, waveName = rollout.FromStatus(&rs), rollout.Strategy{}, rs.WaveName
				return fmt.Sprintf("state kept: %s wave %q", describe(state), rs.WaveName)
			case "step":
				in := RunInput{Update: upd, State: state, WaveName: waveName, Latest: int64(num(t, args["latest"])), Now: t0.Add(dur(t, args["at"]))}
				in.Commands.Approved = -1
				if a, ok := args["approved"]; ok {
					in.Commands.Approved = num(t, a)
				}
				_, in.Commands.Pause = args["pause"]
				_, in.Commands.Resume = args["resume"]
				_, in.Commands.Abort = args["abort"]
				for _, name := range slices.Sorted(maps.Keys(clusters)) {
					in.Clusters = append(in.Clusters, clusters[name])
				}
				d := Run(in)
				state, strategy = d.State, d.Strategy
				waveName = d.State.Status(d.Strategy).WaveName
				return render(d)
			}
			if out, ok := objects.do(t, cmd, input); ok {
				return out
			}
			t.Fatalf("transcript: unknown command %q", cmd)
			return ""
		}
	})
}

// parse splits a transcript line into its command and arguments: key=value, or a word alone
// (a flag), whose first is also the argument "name".
func parse(line string) (string, map[string]string) {
	fields := strings.Fields(line)
	args := map[string]string{}
	for i, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if i == 0 && !ok {
			args["name"] = f
		}
		args[k] = v
	}
	return fields[0], args
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func labels(s string) map[string]string {
	if s == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range list(s) {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// num reads a whole number of a transcript; missing is 0, and a malformed one fails the test
// rather than reading as 0.
func num(t *testing.T, s string) int {
	t.Helper()
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("transcript: %q is not a whole number", s)
	}
	return n
}

func dur(t *testing.T, s string) time.Duration {
	t.Helper()
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("transcript: %v", err)
	}
	return d
}

func describe(s rollout.State) string {
	return fmt.Sprintf("target=%s stable=%s phase=%s wave=%d", s.Target, s.Stable, s.Phase, s.Wave)
}

func render(d RunDecision) string {
	var b strings.Builder
	b.WriteString(describe(d.State))
	if d.State.Message != "" {
		b.WriteString("\nmessage: " + d.State.Message)
	}
	for _, name := range slices.Sorted(maps.Keys(d.Targets)) {
		fmt.Fprintf(&b, "\n%s -> %d", name, d.Targets[name])
	}
	for _, e := range d.Events {
		b.WriteString("\nevent: " + e)
	}
	if d.RecheckAfter > 0 {
		fmt.Fprintf(&b, "\nrecheck after %s", d.RecheckAfter)
	}
	return b.String()
}
