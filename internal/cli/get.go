package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/yaml"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

type getOptions struct {
	output        string
	namespace     string
	allNamespaces bool
	selector      string
}

func newGetCmd(g *globals) *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:   "get (clusters|placements) [NAME]",
		Short: "List clusters or placements on the hub",
		Example: `  convoy get clusters
  convoy get clusters -l convoy.dev/region=us-east -o yaml
  convoy get placements -A`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"clusters", "placements"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.output != "" && o.output != "table" && o.output != "yaml" && o.output != "json" {
				return usageError("-o %q is not an output format; use table, yaml or json", o.output)
			}
			sel, err := labels.Parse(o.selector)
			if err != nil {
				return usageError("-l %q is not a label selector: %v", o.selector, err)
			}
			c, err := g.hubClient()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			ctx := cmd.Context()
			switch strings.ToLower(args[0]) {
			case "clusters", "cluster":
				return getObjects(ctx, c, o, name, sel, &v1alpha1.ClusterList{}, &v1alpha1.Cluster{}, g.streams.Out, clusterTable)
			case "placements", "placement", "plc":
				return getObjects(ctx, c, o, name, sel, &v1alpha1.PlacementList{}, &v1alpha1.Placement{}, g.streams.Out, placementTable)
			default:
				return usageError("convoy get does not know %q; use clusters or placements", args[0])
			}
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "table", "output format: table, yaml or json")
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace, for placements")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list placements in every namespace")
	f.StringVarP(&o.selector, "selector", "l", "", "label selector, for example convoy.dev/region=us-east")
	return cmd
}

type tableFunc func(w io.Writer, list client.ObjectList, withNamespace bool)

// getObjects lists objects of list's type, or gets the one called name, and prints them.
func getObjects(ctx context.Context, c client.Client, o *getOptions, name string, sel labels.Selector, list client.ObjectList, item client.Object, out io.Writer, table tableFunc) error {
	gvk, err := apiutil.GVKForObject(item, c.Scheme())
	if err != nil {
		return err
	}
	namespaced, err := c.IsObjectNamespaced(item)
	if err != nil {
		return hubError("the hub", err)
	}
	ns := ""
	if namespaced && !o.allNamespaces {
		ns = o.namespace
	}
	var items []runtime.Object
	if name != "" {
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, item); err != nil {
			if apierrors.IsNotFound(err) {
				where := ""
				if namespaced {
					where = fmt.Sprintf(" in namespace %q", ns)
				}
				return fmt.Errorf("%s %q not found%s", strings.ToLower(gvk.Kind), name, where)
			}
			return hubError("the hub", err)
		}
		items = []runtime.Object{item}
		if err := meta.SetList(list, items); err != nil {
			return err
		}
	} else {
		if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return hubError("the hub", err)
		}
		if items, err = meta.ExtractList(list); err != nil {
			return err
		}
	}
	for _, it := range items {
		it.GetObjectKind().SetGroupVersionKind(gvk)
	}

	switch o.output {
	case "yaml", "json":
		var v any = map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
		if name != "" {
			v = item
		}
		if o.output == "json" {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		raw, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = out.Write(raw)
		return err
	default:
		if len(items) == 0 {
			fmt.Fprintf(out, "No %ss found.\n", strings.ToLower(gvk.Kind))
			return nil
		}
		table(out, list, namespaced && o.allNamespaces)
		return nil
	}
}

func clusterTable(w io.Writer, list client.ObjectList, _ bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPROVIDER\tREGION\tENV\tVERSION\tNODES\tPHASE\tPROFILE\tCONFORMANT\tAGE")
	for _, c := range list.(*v1alpha1.ClusterList).Items {
		inv := inventory(&c)
		nodes := fmt.Sprintf("%d/%d", inv.Nodes.Ready, inv.Nodes.Total)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Spec.Provider, dash(c.Spec.Region), dash(c.Spec.Environment),
			dash(inv.KubernetesVersion), nodes, dash(string(c.Status.Phase)), profileColumn(&c), conformantColumn(&c), age(c.CreationTimestamp))
	}
	tw.Flush()
}

// profileColumn names a cluster's profile and the revision it is held to, as prod@3.
func profileColumn(c *v1alpha1.Cluster) string {
	switch {
	case c.Spec.Profile == nil:
		return "-"
	case c.Status.Profile == nil:
		return c.Spec.Profile.Name
	}
	return fmt.Sprintf("%s@%d", c.Spec.Profile.Name, c.Status.Profile.Revision)
}

// conformantColumn says whether a cluster matches its profile; a drifted one says in how
// many fields (convoy cluster diff lists them).
func conformantColumn(c *v1alpha1.Cluster) string {
	switch s := c.Status.Profile; {
	case s == nil:
		return "-"
	case s.Conformant:
		return "yes"
	default:
		return fmt.Sprintf("no (%d)", len(s.Drift))
	}
}

func placementTable(w io.Writer, list client.ObjectList, withNamespace bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	if withNamespace {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tRESOURCES\tREPLICAS\tCLUSTERS\tAGE")
	for _, p := range list.(*v1alpha1.PlacementList).Items {
		if withNamespace {
			fmt.Fprintf(tw, "%s\t", p.Namespace)
		}
		mode := string(v1alpha1.Duplicated)
		if p.Spec.Replicas != nil && p.Spec.Replicas.Type != "" {
			mode = string(p.Spec.Replicas.Type)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", p.Name, len(p.Spec.Resources), mode, p.Status.ScheduledClusters, age(p.CreationTimestamp))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(time.Since(t.Time))
}
