package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	profilecontroller "github.com/convoy-dev/convoy/internal/controller/profile"
	"github.com/convoy-dev/convoy/internal/profile"
)

func newProfileCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "profile",
		Aliases: []string{"profiles"},
		Short:   "Inspect cluster profiles and steer their update runs",
		Long: `A ClusterProfile is the bill of materials of its clusters: the Kubernetes version, the
add-ons, API server settings and node pool templates. Create one with kubectl apply; a
Cluster names it in spec.profile. Each change is a revision, and moves the profile's clusters
to it in an update run: wave by wave (cluster by cluster unless spec.update.waves says
otherwise), each cluster's control plane first, then its nodes one at a time.`,
	}
	cmd.AddCommand(newProfileListCmd(g), newProfileStatusCmd(g), newProfileHistoryCmd(g), newProfileUpgradeCmd(g))
	for _, a := range []struct{ name, short string }{
		{"pause", "Hold the update run where it is: no further cluster starts moving (one already moving finishes its nodes)"},
		{"resume", "Go on after a pause, also one the run made itself (a PodDisruptionBudget that blocked a drain)"},
		{"abort", "Stop the update run; clusters not yet moved stay on the stable revision"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use:   a.name + " NAME",
			Short: a.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				hc, err := g.hubClient()
				if err != nil {
					return err
				}
				msg, err := steerProfile(cmd.Context(), hc, args[0], a.name)
				if err != nil {
					return err
				}
				fmt.Fprintln(g.streams.Out, msg)
				return nil
			},
		})
	}
	return cmd
}

func getProfile(ctx context.Context, hc client.Client, name string) (*v1alpha1.ClusterProfile, error) {
	p := &v1alpha1.ClusterProfile{}
	if err := hc.Get(ctx, client.ObjectKey{Name: name}, p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("profile %q not found; `convoy profile list` shows the profiles", name)
		}
		return nil, hubError("the hub", err)
	}
	return p, nil
}

func newProfileListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the profiles, their version, revision and how many clusters conform",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			var list v1alpha1.ClusterProfileList
			if err := hc.List(cmd.Context(), &list); err != nil {
				return hubError("the hub", err)
			}
			if len(list.Items) == 0 {
				fmt.Fprintln(g.streams.Out, "No profiles found.")
				return nil
			}
			tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tREVISION\tCONFORMANT\tRUN\tAGE")
			for _, p := range list.Items {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d/%d\t%s\t%s\n", p.Name, p.Spec.KubernetesVersion, p.Status.Revision,
					p.Status.Conformant, p.Status.Clusters, runPhase(&p), age(p.CreationTimestamp))
			}
			return tw.Flush()
		},
	}
}

func runPhase(p *v1alpha1.ClusterProfile) string {
	if p.Status.Run == nil {
		return "-"
	}
	return string(p.Status.Run.Phase)
}

func newProfileHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history NAME",
		Short: "List a profile's revisions and which clusters are held to each",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			if _, err := getProfile(ctx, hc, args[0]); err != nil {
				return err
			}
			revs, err := profilecontroller.Revisions(ctx, hc, args[0])
			if err != nil {
				return hubError("the hub", err)
			}
			clusters, err := profileClusters(ctx, hc, args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tKUBERNETES\tADD-ONS\tCREATED\tCLUSTERS")
			for _, r := range revs {
				var addons, held []string
				for _, a := range r.Spec.Addons {
					addons = append(addons, string(a.Name)+"@"+dash(a.Version))
				}
				for _, c := range clusters {
					if c.Status.Profile != nil && c.Status.Profile.Revision == r.Number {
						held = append(held, c.Name)
					}
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Number, r.Spec.KubernetesVersion, dash(strings.Join(addons, ",")),
					age(r.Created), dash(strings.Join(held, ",")))
			}
			return tw.Flush()
		},
	}
}

func profileClusters(ctx context.Context, hc client.Client, name string) ([]v1alpha1.Cluster, error) {
	var list v1alpha1.ClusterList
	if err := hc.List(ctx, &list); err != nil {
		return nil, hubError("the hub", err)
	}
	var out []v1alpha1.Cluster
	for _, c := range list.Items {
		if c.Spec.Profile != nil && c.Spec.Profile.Name == name {
			out = append(out, c)
		}
	}
	return out, nil
}

func newProfileStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status NAME",
		Short: "Show the update run: its wave, why it waits, and each cluster's revision and conformance",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			p, err := getProfile(cmd.Context(), hc, args[0])
			if err != nil {
				return err
			}
			clusters, err := profileClusters(cmd.Context(), hc, p.Name)
			if err != nil {
				return err
			}
			printProfileStatus(g.streams.Out, p, clusters)
			return nil
		},
	}
}

func printProfileStatus(w io.Writer, p *v1alpha1.ClusterProfile, clusters []v1alpha1.Cluster) {
	fmt.Fprintf(w, "Profile %s: Kubernetes %s, revision %d\n", p.Name, p.Spec.KubernetesVersion, p.Status.Revision)
	if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ProfileAccepted); c != nil && c.Status != "True" {
		fmt.Fprintf(w, "Not accepted: %s\n", c.Message)
	}
	if r := p.Status.Run; r != nil {
		fmt.Fprintf(w, "Update run: %s, revision %s (stable %s), wave %s\n", r.Phase, dash(r.Target), dash(r.Stable), dash(r.WaveName))
		if r.Message != "" {
			fmt.Fprintf(w, "  %s\n", r.Message)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tTARGET\tVERSION\tCONFORMANT\tSTATE")
	for _, c := range clusters {
		target, conformant := "-", "-"
		if s := c.Status.Profile; s != nil {
			target, conformant = strconv.FormatInt(s.Revision, 10), strconv.FormatBool(s.Conformant)
		}
		state := string(c.Status.Phase)
		if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterProvisioned); cond != nil && cond.Status != "True" {
			state += ": " + cond.Message
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, target, dash(inventory(&c).KubernetesVersion), conformant, state)
	}
	tw.Flush()
}

func newProfileUpgradeCmd(g *globals) *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "upgrade NAME VERSION",
		Short: "Move a profile to another Kubernetes version, and follow its update run",
		Long: `Sets the profile's Kubernetes version. Kubernetes' version skew policy applies: one minor
version up at a time, never down. The profile's clusters then move in an update run; with
--wait, this follows it, cluster by cluster and node by node, until every cluster conforms or
the run pauses (a PodDisruptionBudget blocking a drain, a node that did not come back).`,
		Example: "  convoy profile upgrade prod v1.37.2",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name, to := args[0], args[1]
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			p, err := getProfile(ctx, hc, name)
			if err != nil {
				return err
			}
			if err := profile.CheckVersionChange(p.Spec.KubernetesVersion, to); err != nil {
				return usageError("%v", err)
			}
			cm := &corev1.ConfigMap{}
			if err := hc.Get(ctx, client.ObjectKey{Namespace: v1alpha1.SystemNamespace, Name: v1alpha1.VersionsConfigMap}, cm); err == nil {
				if err := profile.CheckAvailable(to, strings.Split(cm.Data[v1alpha1.VersionsKey], ",")); err != nil {
					return fmt.Errorf("%w; no cluster could be built from the profile", err)
				}
			}
			if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				if err := hc.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
					return err
				}
				p.Spec.KubernetesVersion = to
				return hc.Update(ctx, p)
			}); err != nil {
				return hubError("the hub", err)
			}
			fmt.Fprintf(g.streams.Out, "profile %s: Kubernetes %s\n", name, to)
			if !wait {
				fmt.Fprintf(g.streams.Out, "follow the update run with `convoy profile status %s`\n", name)
				return nil
			}
			return followRun(ctx, hc, g.streams.Out, p, timeout)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", true, "follow the update run until every cluster conforms or the run pauses")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Hour, "how long to follow the run")
	return cmd
}

// followRun prints the update run's steps as they happen: each change of its message and of
// each cluster's state, until the run completes with every cluster conformant, pauses, or the
// hub refuses the revision.
func followRun(ctx context.Context, hc client.Client, out io.Writer, p *v1alpha1.ClusterProfile, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	generation := p.Generation
	seen := map[string]string{}
	say := func(key, line string) {
		if seen[key] != line {
			seen[key] = line
			fmt.Fprintln(out, line)
		}
	}
	for {
		if err := hc.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return hubError("the hub", err)
		}
		clusters, err := profileClusters(ctx, hc, p.Name)
		if err != nil {
			return err
		}
		if p.Status.ObservedGeneration >= generation {
			if c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ProfileAccepted); c != nil && c.Status == "False" {
				return fmt.Errorf("the hub refused revision %d: %s", p.Status.Revision, c.Message)
			}
			if r := p.Status.Run; r != nil {
				say("run", fmt.Sprintf("run %s: %s", r.Phase, dash(r.Message)))
				for _, c := range clusters {
					state := string(c.Status.Phase)
					if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterProvisioned); cond != nil && cond.Status != "True" {
						state = cond.Message
					}
					if s := c.Status.Profile; s != nil && s.Conformant {
						state = fmt.Sprintf("conformant at revision %d (Kubernetes %s)", s.Revision, inventory(&c).KubernetesVersion)
					}
					say("cluster/"+c.Name, fmt.Sprintf("  %s: %s", c.Name, state))
				}
				target := strconv.FormatInt(p.Status.Revision, 10)
				switch {
				case r.Phase == v1alpha1.RolloutComplete && r.Target == target && int(p.Status.Conformant) == len(clusters):
					fmt.Fprintf(out, "every cluster of %s conforms to revision %s\n", p.Name, target)
					return nil
				case r.Phase == v1alpha1.RolloutPaused:
					return fmt.Errorf("the update run paused: %s; fix that, then `convoy profile resume %s`", r.Message, p.Name)
				case r.Phase == v1alpha1.RolloutAborted:
					return fmt.Errorf("the update run was aborted: %s", r.Message)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the update run of %s did not finish within %s; it goes on: `convoy profile status %s`", p.Name, timeout, p.Name)
		case <-time.After(time.Second):
		}
	}
}

// steerProfile pauses, resumes or aborts a profile's update run.
func steerProfile(ctx context.Context, hc client.Client, name, action string) (string, error) {
	p, err := getProfile(ctx, hc, name)
	if err != nil {
		return "", err
	}
	token := time.Now().UTC().Format(time.RFC3339Nano)
	var msg string
	change := func(p *v1alpha1.ClusterProfile) error {
		switch action {
		case "pause":
			p.Spec.Update.Paused, msg = true, "paused"
		case "resume":
			p.Spec.Update.Paused, msg = false, "resumed"
			metaSet(&p.Annotations, v1alpha1.AnnotationRolloutResume, token)
		case "abort":
			if r := p.Status.Run; r == nil || r.Target == "" || r.Phase == v1alpha1.RolloutComplete || r.Phase == v1alpha1.RolloutAborted {
				return fmt.Errorf("profile %s has no update run in progress to abort", p.Name)
			}
			metaSet(&p.Annotations, v1alpha1.AnnotationRolloutAbort, p.Status.Run.Target+"@"+token)
			msg = "aborted; clusters not yet moved stay on revision " + p.Status.Run.Stable
		}
		return nil
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := hc.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return err
		}
		if err := change(p); err != nil {
			return err
		}
		return hc.Update(ctx, p)
	})
	if err != nil {
		return "", err
	}
	return "profile " + name + ": " + msg, nil
}

func metaSet(m *map[string]string, k, v string) {
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
}

func newClusterDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff NAME",
		Short: "Show, field by field, where a cluster differs from its profile",
		Long: `Compares what the cluster's agent observes (versions, add-ons, feature gates, namespaces)
with the revision of its profile the cluster is held to. The hub puts back what it manages
(the version, local clusters' add-ons); an imported cluster's differences are only reported.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hc, err := g.hubClient()
			if err != nil {
				return err
			}
			c, err := getCluster(cmd.Context(), hc, args[0])
			if err != nil {
				return err
			}
			if c.Spec.Profile == nil {
				return fmt.Errorf("cluster %s names no profile (spec.profile); there is nothing to compare it with", c.Name)
			}
			s := c.Status.Profile
			if s == nil {
				cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.ClusterProfileConformant)
				why := "the hub has not judged it yet"
				if cond != nil {
					why = cond.Message
				}
				return fmt.Errorf("cluster %s: no comparison with profile %s yet: %s", c.Name, c.Spec.Profile.Name, why)
			}
			out := g.streams.Out
			if s.Conformant {
				fmt.Fprintf(out, "cluster %s matches revision %d of profile %s\n", c.Name, s.Revision, c.Spec.Profile.Name)
				return nil
			}
			fmt.Fprintf(out, "cluster %s differs from revision %d of profile %s:\n", c.Name, s.Revision, c.Spec.Profile.Name)
			tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "FIELD\tPROFILE\tCLUSTER")
			for _, d := range s.Drift {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Field, d.Want, dash(d.Have))
			}
			return tw.Flush()
		},
	}
}
