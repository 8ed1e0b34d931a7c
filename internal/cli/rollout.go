package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout (status|pause|resume|approve|abort|undo) NAMESPACE/NAME",
		Short: "Watch and steer the wave-by-wave rollout of a Placement's templates",
		Long: `A Placement with spec.rollout rolls every change of its templates out wave by wave, each
wave behind a health gate. These commands show where it stands and steer it.`,
	}
	var toRevision int64
	type action struct {
		name, short string
		run         func(ctx context.Context, c client.Client, p *v1alpha1.Placement) (string, error)
	}
	actions := []action{
		{"status", "Show the wave, each cluster's revision and why the rollout waits", func(ctx context.Context, c client.Client, p *v1alpha1.Placement) (string, error) {
			var b strings.Builder
			if err := printRollout(ctx, &b, c, p); err != nil {
				return "", err
			}
			return b.String(), nil
		}},
		{"pause", "Hold the rollout where it is", func(ctx context.Context, c client.Client, p *v1alpha1.Placement) (string, error) {
			return "paused", patchPlacement(ctx, c, p, func(p *v1alpha1.Placement) { p.Spec.Rollout.Paused = true })
		}},
		{"resume", "Go on after a pause, also one the rollout made itself", func(ctx context.Context, c client.Client, p *v1alpha1.Placement) (string, error) {
			return "resumed", patchPlacement(ctx, c, p, func(p *v1alpha1.Placement) {
				p.Spec.Rollout.Paused = false
				setAnnotation(p, v1alpha1.AnnotationRolloutResume, time.Now().UTC().Format(time.RFC3339Nano))
			})
		}},
		{"approve", "Let the wave that waits for approval start", func(ctx context.Context, c client.Client, p *v1alpha1.Placement) (string, error) {
			if p.Status.Rollout == nil || p.Status.Rollout.Phase != v1alpha1.RolloutWaitingForApproval {
				return "", fmt.Errorf("the rollout of %s/%s is not waiting for approval; see `convoy rollout status %s/%s`", p.Namespace, p.Name, p.Namespace, p.Name)
			}
			wave := p.Status.Rollout.Wave
			return fmt.Sprintf("wave %s approved", p.Status.Rollout.WaveName), patchPlacement(ctx, c, p, func(p *v1alpha1.Placement) {
				setAnnotation(p, v1alpha1.AnnotationRolloutApprove, p.Status.Rollout.Target+"/"+strconv.Itoa(int(wave)))
			})
		}},
		{"abort", "Stop the rollout and send every cluster back to the stable revision", func(ctx context.Context, c client.Client, p *v1alpha1.Placement) (string, error) {
			if p.Status.Rollout == nil || p.Status.Rollout.Target == "" {
				return "", fmt.Errorf("no rollout of %s/%s to abort", p.Namespace, p.Name)
			}
			target := p.Status.Rollout.Target
			return "aborted; every cluster goes back to revision " + p.Status.Rollout.Stable, patchPlacement(ctx, c, p, func(p *v1alpha1.Placement) {
				setAnnotation(p, v1alpha1.AnnotationRolloutAbort, target+"@"+time.Now().UTC().Format(time.RFC3339Nano))
			})
		}},
		{"undo", "Put the templates of an earlier revision back on the hub; it rolls out in waves like any change", func(ctx context.Context, c client.Client, p *v1alpha1.Placement) (string, error) {
			return undo(ctx, c, p, toRevision)
		}},
	}
	for _, a := range actions {
		sub := &cobra.Command{
			Use:   a.name + " NAMESPACE/NAME",
			Short: a.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, p, err := g.placement(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if p.Spec.Rollout == nil {
					return fmt.Errorf("placement %s/%s has no spec.rollout; changes reach every cluster at once. Add waves to roll out step by step", p.Namespace, p.Name)
				}
				out, err := a.run(cmd.Context(), c, p)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.streams.Out, strings.TrimRight(out, "\n"))
				return nil
			},
		}
		if a.name == "undo" {
			sub.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision number to go back to (default: the last stable one)")
		}
		cmd.AddCommand(sub)
	}
	return cmd
}

func setAnnotation(p *v1alpha1.Placement, k, v string) {
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[k] = v
}

func patchPlacement(ctx context.Context, c client.Client, p *v1alpha1.Placement, change func(*v1alpha1.Placement)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		change(p)
		return c.Update(ctx, p)
	})
}

func revisions(ctx context.Context, c client.Client, p *v1alpha1.Placement) ([]appsv1.ControllerRevision, error) {
	var list appsv1.ControllerRevisionList
	if err := c.List(ctx, &list, client.InNamespace(p.Namespace), client.MatchingLabels{v1alpha1.LabelRevisionOf: p.Name}); err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b appsv1.ControllerRevision) int { return int(a.Revision - b.Revision) })
	return list.Items, nil
}

func printRollout(ctx context.Context, out io.Writer, c client.Client, p *v1alpha1.Placement) error {
	rs := p.Status.Rollout
	if rs == nil {
		fmt.Fprintf(out, "Placement %s/%s: no rollout recorded yet\n", p.Namespace, p.Name)
		return nil
	}
	revs, err := revisions(ctx, c, p)
	if err != nil {
		return err
	}
	number := map[string]int64{}
	for _, r := range revs {
		number[v1alpha1.RevisionHash(p.Name, r.Name)] = r.Revision
	}
	fmt.Fprintf(out, "Placement %s/%s\n", p.Namespace, p.Name)
	fmt.Fprintf(out, "phase:   %s\n", rs.Phase)
	fmt.Fprintf(out, "target:  revision %d (%s)\n", number[rs.Target], rs.Target)
	fmt.Fprintf(out, "stable:  revision %d (%s)\n", number[rs.Stable], rs.Stable)
	if rs.WaveName != "" {
		fmt.Fprintf(out, "wave:    %d (%s)\n", rs.Wave, rs.WaveName)
	}
	if rs.Message != "" {
		label := "waiting"
		if rs.Phase == v1alpha1.RolloutComplete || rs.Phase == v1alpha1.RolloutAborted {
			label = "state"
		}
		fmt.Fprintf(out, "%-8s %s\n", label+":", rs.Message)
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tREVISION\tAVAILABLE\tHEALTHY")
	for _, s := range p.Status.Clusters {
		fmt.Fprintf(tw, "%s\t%d (%s)\t%s\t%s\n", s.Cluster, number[s.Revision], s.Revision, yesNo(s.Available), yesNo(s.Healthy))
	}
	_ = tw.Flush()
	fmt.Fprintln(out, "\nhistory:")
	for _, r := range revs {
		fmt.Fprintf(out, "  %d  %s  %s\n", r.Revision, v1alpha1.RevisionHash(p.Name, r.Name), r.CreationTimestamp.UTC().Format(time.RFC3339))
	}
	return nil
}

// undo writes the templates of an earlier revision back to the hub.
func undo(ctx context.Context, c client.Client, p *v1alpha1.Placement, to int64) (string, error) {
	revs, err := revisions(ctx, c, p)
	if err != nil {
		return "", err
	}
	var pick *appsv1.ControllerRevision
	for i := range revs {
		r := &revs[i]
		switch {
		case to != 0 && r.Revision == to:
			pick = r
		case to == 0 && p.Status.Rollout != nil && v1alpha1.RevisionHash(p.Name, r.Name) == p.Status.Rollout.Stable && p.Status.Rollout.Stable != p.Status.Rollout.Target:
			pick = r
		}
	}
	if pick == nil && to == 0 && len(revs) >= 2 {
		pick = &revs[len(revs)-2]
	}
	if pick == nil {
		have := make([]string, len(revs))
		for i, r := range revs {
			have[i] = strconv.FormatInt(r.Revision, 10)
		}
		return "", fmt.Errorf("no revision to go back to (kept: %s); pass --to-revision with one of those", strings.Join(have, ", "))
	}
	var data v1alpha1.StoredRevision
	if err := json.Unmarshal(pick.Data.Raw, &data); err != nil {
		return "", fmt.Errorf("revision %d cannot be read: %w", pick.Revision, err)
	}
	for _, raw := range data.Templates {
		stored := &unstructured.Unstructured{}
		if err := stored.UnmarshalJSON(raw.Raw); err != nil {
			return "", fmt.Errorf("revision %d cannot be read: %w", pick.Revision, err)
		}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(stored.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKey{Namespace: stored.GetNamespace(), Name: stored.GetName()}, live); err != nil {
				if apierrors.IsNotFound(err) {
					return c.Create(ctx, stored.DeepCopy())
				}
				return err
			}
			u := stored.DeepCopy()
			u.SetResourceVersion(live.GetResourceVersion())
			return c.Update(ctx, u)
		})
		if err != nil {
			return "", fmt.Errorf("restore %s %s: %w", stored.GetKind(), stored.GetName(), err)
		}
	}
	return fmt.Sprintf("templates of revision %d put back on the hub; they roll out in waves (convoy rollout status %s/%s)", pick.Revision, p.Namespace, p.Name), nil
}
