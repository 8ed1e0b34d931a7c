package rollout

import (
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/transcript"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/*.txt")

// TestTranscripts runs the data-driven transcripts in testdata/. A transcript is a series of
// blocks, each a command and its arguments (and, for strategy, wave lines), a line "----" and
// the expected output, then a blank line. Commands:
//
//	strategy deadline=DURATION          then one line per wave:
//	wave NAME clusters=a,b max=N soak=DURATION [approval] [metric=MAX delay=DURATION]
//	metric WAVE value=V|empty|err=TEXT|untaken   the wave's metric reading from now on
//	observe NAME rev=R available|unavailable|lost   (any number of lines)
//	step at=SECONDS latest=R [pause] [resume] [abort] [approved=N] [for=R]
//	restart                             forget everything but the persisted State
//
// go test -run TestTranscripts -update rewrites the expected output; review the diff.
func TestTranscripts(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	transcript.Run(t, *update, func(t *testing.T) func([]string) string {
		var (
			strategy Strategy
			state    State
			observed = map[string]Cluster{}
		)
		return func(input []string) string {
			fields := strings.Fields(input[0])
			args := map[string]string{}
			for _, f := range fields[1:] {
				k, v, _ := strings.Cut(f, "=")
				args[k] = v
			}
			switch fields[0] {
			case "strategy":
				strategy = Strategy{ProgressDeadline: dur(t, args["deadline"])}
				for _, l := range input[1:] {
					wf := strings.Fields(l)
					wa := map[string]string{}
					for _, f := range wf[2:] {
						k, v, _ := strings.Cut(f, "=")
						wa[k] = v
					}
					w := Wave{Name: wf[1], Clusters: strings.Split(wa["clusters"], ","), Soak: dur(t, wa["soak"])}
					w.MaxUnavailable = num(t, wa["max"], 0)
					_, w.RequireApproval = wa["approval"]
					if m, ok := wa["metric"]; ok {
						v, err := strconv.ParseFloat(m, 64)
						if err != nil {
							t.Fatalf("transcript: metric=%q: %v", m, err)
						}
						w.Metric = &Metric{Name: "q(" + w.Name + ")", Max: v, Delay: dur(t, wa["delay"])}
					}
					strategy.Waves = append(strategy.Waves, w)
				}
				return fmt.Sprintf("%d waves", len(strategy.Waves))
			case "observe":
				for _, l := range input {
					of := strings.Fields(l)
					c := Cluster{Name: of[1]}
					for _, f := range of[2:] {
						switch {
						case strings.HasPrefix(f, "rev="):
							c.Revision = strings.TrimPrefix(f, "rev=")
						case f == "available":
							c.Available = true
						case f == "lost":
							c.Lost = true
						case f == "unknown":
							c.Unknown = true
						}
					}
					observed[c.Name] = c
				}
				return "ok"
			case "metric":
				for i := range strategy.Waves {
					w := &strategy.Waves[i]
					if w.Name != fields[1] || w.Metric == nil {
						continue
					}
					r := Reading{Taken: true}
					switch v, isValue := args["value"]; {
					case isValue:
						f, err := strconv.ParseFloat(v, 64)
						if err != nil {
							t.Fatal(err)
						}
						r.Value = f
					case args["err"] != "":
						r.Err = strings.ReplaceAll(args["err"], "_", " ")
					default:
						_, r.Empty = args["empty"]
						_, untaken := args["untaken"]
						r.Taken = !untaken
					}
					w.Metric.Reading = r
					return "ok"
				}
				t.Fatalf("transcript: no wave %q with a metric gate", fields[1])
			case "restart":
				// Only the state survives a hub restart, as the Placement's status keeps it: the
				// next steps go on from what that round trip gives back.
				raw, err := json.Marshal(state.Status(strategy))
				if err != nil {
					t.Fatal(err)
				}
				var rs v1alpha1.RolloutStatus
				if err := json.Unmarshal(raw, &rs); err != nil {
					t.Fatal(err)
				}
				state = FromStatus(&rs)
				got := "state kept: " + describeState(state)
				for _, at := range []struct {
					what string
					t    time.Time
				}{{"wave started", state.WaveStarted}, {"soak started", state.SoakStarted}} {
					if !at.t.IsZero() {
						got += fmt.Sprintf("\n%s at %s", at.what, at.t.Sub(t0))
					}
				}
				return got
			case "step":
				secs := num(t, args["at"], -1)
				cmd := Commands{Approved: -1, For: args["for"]}
				_, cmd.Pause = args["pause"]
				_, cmd.Abort = args["abort"]
				_, cmd.Resume = args["resume"]
				if a, ok := args["approved"]; ok {
					cmd.Approved = num(t, a, -1)
				}
				var cs []Cluster
				for _, c := range observed {
					cs = append(cs, c)
				}
				slices.SortFunc(cs, func(a, b Cluster) int { return strings.Compare(a.Name, b.Name) })
				d := Step(strategy, state, args["latest"], cs, cmd, t0.Add(time.Duration(secs)*time.Second))
				state = d.State
				return render(d)
			}
			t.Fatalf("unknown command %q", fields[0])
			return ""
		}
	})
}

// num reads a whole number of a transcript; a missing one is def (when def is not -1) and a
// malformed one fails the test, rather than reading as 0.
func num(t *testing.T, s string, def int) int {
	t.Helper()
	if s == "" && def != -1 {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("transcript: %q is not a whole number", s)
	}
	return n
}

func dur(t *testing.T, s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func describeState(s State) string {
	return fmt.Sprintf("target=%s stable=%s phase=%s wave=%d", s.Target, s.Stable, s.Phase, s.Wave)
}

func render(d Decision) string {
	var b strings.Builder
	b.WriteString(describeState(d.State))
	if d.State.Message != "" {
		b.WriteString("\nmessage: " + d.State.Message)
	}
	var names []string
	for n := range d.Revisions {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(&b, "\n%s -> %s", n, d.Revisions[n])
	}
	for _, e := range d.Events {
		b.WriteString("\nevent: " + e)
	}
	if d.RecheckAfter > 0 {
		fmt.Fprintf(&b, "\nrecheck after %s", d.RecheckAfter)
	}
	return b.String()
}
