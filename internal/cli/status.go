package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "status NAMESPACE/NAME",
		Short:   "Show where a Placement's resources run and how they are doing, cluster by cluster",
		Example: `  convoy status shop/web`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, p, err := g.placement(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			printPlacementStatus(g.streams.Out, p)
			return nil
		},
	}
}

// placement reads the Placement named NAMESPACE/NAME from the hub.
func (g *globals) placement(ctx context.Context, arg string) (client.Client, *v1alpha1.Placement, error) {
	ns, name, ok := strings.Cut(arg, "/")
	if !ok || ns == "" || name == "" {
		return nil, nil, usageError("%q: name the Placement as NAMESPACE/NAME, for example shop/web", arg)
	}
	c, err := g.hubClient()
	if err != nil {
		return nil, nil, err
	}
	p := &v1alpha1.Placement{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("placement %s/%s not found; list them with `convoy get placements -A`", ns, name)
		}
		return nil, nil, err
	}
	return c, p, nil
}

func printPlacementStatus(out io.Writer, p *v1alpha1.Placement) {
	fmt.Fprintf(out, "Placement %s/%s (generation %d, status of generation %d)\n\n", p.Namespace, p.Name, p.Generation, p.Status.ObservedGeneration)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tHEALTHY\tRESOURCES\tREPLICAS\tAVAILABLE\tAPPLIED\tDRIFTED\tERROR")
	for _, s := range p.Status.Clusters {
		replicas, avail := "-", "-"
		if s.ScheduledReplicas != nil {
			replicas = fmt.Sprint(*s.ScheduledReplicas)
		}
		if s.AvailableReplicas != nil {
			avail = fmt.Sprint(*s.AvailableReplicas)
		} else if s.Available {
			avail = "yes"
		} else {
			avail = "no"
		}
		errMsg := s.Error
		if errMsg == "" {
			errMsg = "-"
		}
		fmt.Fprintf(tw, "%s\t%v\t%d\t%s\t%s\t%v\t%d\t%s\n", s.Cluster, yesNo(s.Healthy), s.Resources, replicas, avail, yesNo(s.Applied), s.Drifted, errMsg)
	}
	_ = tw.Flush()
	if len(p.Status.Clusters) == 0 {
		fmt.Fprintln(out, "(no clusters)")
	}
	fmt.Fprintln(out)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(out, "%-18s %-6s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newApplyCmd(g *globals) *cobra.Command {
	var files []string
	var namespace string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR [-n NAMESPACE]",
		Short: "Apply plain Kubernetes manifests (and Placements) to the hub with server-side apply",
		Long: `Apply manifests to the hub, unchanged, with server-side apply (field manager "convoy").
The hub stores them as templates; a Placement in the same namespace decides where they run.
The same works with kubectl apply or helm install against the hub.`,
		Example: `  convoy apply -f app/ -n shop`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageError("name what to apply with -f FILE or -f DIR")
			}
			var objs []*unstructured.Unstructured
			for _, f := range files {
				got, err := readManifests(f)
				if err != nil {
					return err
				}
				objs = append(objs, got...)
			}
			c, err := g.hubClient()
			if err != nil {
				return err
			}
			var errs []error
			for _, u := range objs {
				namespaced, err := c.IsObjectNamespaced(u)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err))
					continue
				}
				if namespaced && u.GetNamespace() == "" {
					u.SetNamespace(namespace)
				}
				if err := c.Patch(cmd.Context(), u, client.Apply, client.FieldOwner("convoy"), client.ForceOwnership); err != nil {
					errs = append(errs, fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err))
					continue
				}
				where := ""
				if u.GetNamespace() != "" {
					where = " in " + u.GetNamespace()
				}
				fmt.Fprintf(g.streams.Out, "%s/%s applied%s\n", strings.ToLower(u.GetKind()), u.GetName(), where)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "a YAML or JSON file, or a directory of them (not recursive)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace for objects that name none")
	return cmd
}

// readManifests reads every object in a file, or in the .yaml, .yml and .json files of a
// directory, in name order.
func readManifests(path string) ([]*unstructured.Unstructured, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		files = nil
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		slices.Sort(files)
	}
	var out []*unstructured.Unstructured
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(bytes.NewReader(raw)), 4096)
		for i := 1; ; i++ {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s, document %d: %w", f, i, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if u.GetKind() == "" || u.GetAPIVersion() == "" {
				return nil, fmt.Errorf("%s, document %d: an object needs apiVersion and kind", f, i)
			}
			if meta.IsListType(u) {
				return nil, fmt.Errorf("%s, document %d: lists are not supported; write one object per document", f, i)
			}
			out = append(out, u)
		}
	}
	return out, nil
}
