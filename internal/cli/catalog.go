package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/catalog"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/plan"
	"github.com/convoy-dev/convoy/internal/scheduler"
)

func newCatalogCmd(g *globals) *cobra.Command {
	o := &imageOptions{}
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "Data services in one command: list, show, install, upgrade and uninstall catalog packages",
		Long: `The catalog is what the fleet registry holds under catalog/: Helm charts with Convoy's package
metadata (convoy package push puts them there). install keeps the release at the hub, as helm
install would, and makes a Placement of it, so that it runs on the chosen clusters.`,
	}
	cmd.PersistentFlags().StringVar(&o.registry, "registry", "", "the fleet registry's address (default: the one the hub of --data-dir runs)")
	cmd.PersistentFlags().StringVar(&o.dataDir, "data-dir", hub.DefaultDataDir(), "the hub's data dir ($CONVOY_DATA_DIR)")
	cmd.AddCommand(newCatalogListCmd(g, o, false), newCatalogListCmd(g, o, true), newCatalogShowCmd(g, o),
		newCatalogInstallCmd(g, o, false), newCatalogInstallCmd(g, o, true), newCatalogUninstallCmd(g),
		newCatalogActionCmd(g, "backup"), newCatalogActionCmd(g, "restore"))
	return cmd
}

func newCatalogListCmd(g *globals, o *imageOptions, search bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the packages of the catalog",
		Args:  cobra.NoArgs,
	}
	if search {
		cmd.Use, cmd.Short, cmd.Args = "search TERM", "List the packages whose name, category or description has TERM", cobra.ExactArgs(1)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		addr, err := o.addr()
		if err != nil {
			return err
		}
		entries, err := catalog.List(cmd.Context(), addr)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tAPP VERSION\tCATEGORY\tPLANS\tDESCRIPTION")
		n := 0
		for _, e := range entries {
			if search {
				term := strings.ToLower(args[0])
				if !strings.Contains(strings.ToLower(e.Name+" "+e.Meta.Category+" "+e.Description), term) {
					continue
				}
			}
			var plans []string
			for _, p := range e.Meta.Plans {
				plans = append(plans, p.Name)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Version, e.AppVersion, e.Meta.Category, strings.Join(plans, ","), e.Description)
			n++
		}
		_ = tw.Flush()
		if n == 0 {
			if search {
				return fmt.Errorf("no package matches %q; convoy catalog list shows them all", args[0])
			}
			fmt.Fprintf(g.streams.Out, "(the catalog at %s is empty: convoy package push DIR puts a package there)\n", addr)
		}
		return nil
	}
	return cmd
}

func newCatalogShowCmd(g *globals, o *imageOptions) *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "show PACKAGE",
		Short: "Show a package: its versions, plans, connection outputs, values and images",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := o.addr()
			if err != nil {
				return err
			}
			p, _, err := catalog.Fetch(cmd.Context(), addr, args[0], version)
			if err != nil {
				return err
			}
			vs, _ := catalog.Versions(cmd.Context(), addr, args[0])
			out := g.streams.Out
			fmt.Fprintf(out, "Name:         %s\nVersion:      %s (all: %s)\nApp version:  %s\nCategory:     %s\nDescription:  %s\n",
				p.Name, p.Version, strings.Join(vs, ", "), p.AppVersion, p.Meta.Category, p.Description)
			if p.JobTemplate() {
				fmt.Fprintf(out, "Kind:         a batch job template, not a service: it runs a Job to completion on each cluster (Available once Complete) and has no connection Secret\n")
			} else {
				fmt.Fprintf(out, "Binding:      Secret NAME-binding, type servicebinding.io/%s, keys type, provider, %s\n", p.Meta.Type, strings.Join(p.Meta.Outputs, ", "))
			}
			fmt.Fprintln(out, "Plans:")
			for i, pl := range p.Meta.Plans {
				def := ""
				if i == 0 {
					def = " (default)"
				}
				fmt.Fprintf(out, "  %-10s %s%s\n", pl.Name, pl.Description, def)
				if len(pl.Values) > 0 {
					fmt.Fprintf(out, "  %-10s values %s\n", "", pl.Values)
				}
			}
			for _, img := range p.Meta.Images {
				fmt.Fprintf(out, "Image:        %s, of Debian's %s\n", img.Name, strings.Join(img.Debian.Packages, " "))
			}
			fmt.Fprintf(out, "Install:      convoy catalog install %s --name NAME -n NAMESPACE [--placement regions=...] [--set plan=%s]\n", p.Name, p.Meta.Plans[0].Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the version (default: the newest)")
	return cmd
}

// annotationCatalogValues keeps, on a catalog service's Placement, the values its user gave
// (--set KEY=VALUE, JSON list in order), so that an upgrade lays them on the new chart and plan.
const annotationCatalogValues = "catalog.convoy.dev/values"

func setsJSON(sets []string) string {
	if sets == nil {
		sets = []string{}
	}
	b, _ := json.Marshal(sets)
	return string(b)
}

// installOptions are the flags of catalog install and upgrade.
type installOptions struct {
	name, namespace, version, plan string
	placement, set                 []string
	timeout                        time.Duration
	wait                           bool
}

func newCatalogInstallCmd(g *globals, o *imageOptions, upgrade bool) *cobra.Command {
	io := &installOptions{}
	cmd := &cobra.Command{
		Use:   "install PACKAGE",
		Short: "Install a package at the hub and place it on clusters, in one step; wait until it is Available everywhere",
		Example: `  convoy catalog install redis --name cache -n shop
  convoy catalog install postgres --name orders -n shop --placement regions=us-east,eu-west --set plan=ha`,
		Args: cobra.ExactArgs(1),
	}
	if upgrade {
		cmd.Use, cmd.Short = "upgrade NAME", "Upgrade an installed service to another version, plan or values (the values given before stay); it rolls out in waves, one cluster each"
		cmd.Example = `  convoy catalog upgrade cache -n shop --version 7.0.16
  convoy catalog upgrade cache -n shop --set maxMemory=128mb`
	}
	cmd.Flags().StringVarP(&io.namespace, "namespace", "n", "default", "the namespace at the hub (and on the clusters)")
	cmd.Flags().StringVar(&io.version, "version", "", "the package version (default: the newest)")
	cmd.Flags().StringVar(&io.plan, "plan", "", "the plan (the same as --set plan=NAME; default: the package's first)")
	cmd.Flags().StringArrayVar(&io.set, "set", nil, "a value, KEY=VALUE as helm takes it (repeatable); plan=NAME picks the plan")
	cmd.Flags().DurationVar(&io.timeout, "timeout", 10*time.Minute, "how long to wait for the service to be Available on every cluster")
	cmd.Flags().BoolVar(&io.wait, "wait", true, "wait until the service is Available on every chosen cluster")
	if !upgrade {
		cmd.Flags().StringVar(&io.name, "name", "", "the service's name (the Helm release and the Placement; default: the package's)")
		cmd.Flags().StringArrayVar(&io.placement, "placement", nil, "where it runs: regions=A,B, zones=, environments= or clusters= (repeatable; every one must match); default: every cluster")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		addr, err := o.addr()
		if err != nil {
			return err
		}
		helm, err := catalog.FindHelm(kubeproc.DefaultBinDir())
		if err != nil {
			return err
		}
		if upgrade {
			return g.catalogUpgrade(cmd.Context(), addr, helm, args[0], io)
		}
		return g.catalogInstall(cmd.Context(), addr, helm, args[0], io)
	}
	return cmd
}

// parsePlacement reads --placement: KEY=V1,V2 for regions, zones, environments and clusters.
func parsePlacement(flags []string) (v1alpha1.ClusterAffinity, error) {
	var a v1alpha1.ClusterAffinity
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		var vals []string
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				vals = append(vals, s)
			}
		}
		if !ok || len(vals) == 0 {
			return a, usageError("--placement %q: write KEY=VALUE[,VALUE...] with KEY regions, zones, environments or clusters", f)
		}
		switch k {
		case "regions", "region":
			a.Regions = append(a.Regions, vals...)
		case "zones", "zone":
			a.Zones = append(a.Zones, vals...)
		case "environments", "environment":
			a.Environments = append(a.Environments, vals...)
		case "clusters", "cluster", "names":
			a.Names = append(a.Names, vals...)
		default:
			return a, usageError("--placement %q: KEY must be regions, zones, environments or clusters", f)
		}
	}
	return a, nil
}

// splitSets takes plan=NAME out of --set values.
func splitSets(sets []string, plan string) ([]string, string, error) {
	var rest []string
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, "", usageError("--set %q: write KEY=VALUE", s)
		}
		if k == v1alpha1.PlanValue {
			if plan != "" && plan != v {
				return nil, "", usageError("--plan %s and --set plan=%s disagree; give one", plan, v)
			}
			plan = v
			continue
		}
		rest = append(rest, s)
	}
	return rest, plan, nil
}

// release is what catalogInstall and catalogUpgrade have prepared: the chart and the values.
type release struct {
	pkg       *catalog.Package
	plan      v1alpha1.PackagePlan
	chart     string // the .tgz
	planFile  string // the plan's values
	sets      []string
	cleanupFn func()
}

func (r *release) helmArgs() []string {
	args := []string{r.chart, "-f", r.planFile}
	for _, s := range r.sets {
		args = append(args, "--set", s)
	}
	return args
}

// prepare fetches the package, finds the plan and writes the chart and the plan's values to
// temporary files.
func prepare(ctx context.Context, addr, pkg, version, planName string, sets []string) (*release, error) {
	sets, planName, err := splitSets(sets, planName)
	if err != nil {
		return nil, err
	}
	p, tgz, err := catalog.Fetch(ctx, addr, pkg, version)
	if err != nil {
		return nil, err
	}
	pl, err := p.Plan(planName)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "convoy-catalog-")
	if err != nil {
		return nil, err
	}
	r := &release{pkg: p, plan: pl, sets: sets, chart: filepath.Join(dir, p.Name+"-"+p.Version+".tgz"),
		planFile: filepath.Join(dir, "plan.json"), cleanupFn: func() { os.RemoveAll(dir) }}
	values := pl.Values
	if len(values) == 0 {
		values = json.RawMessage("{}")
	}
	if err := errors.Join(os.WriteFile(r.chart, tgz, 0o600), os.WriteFile(r.planFile, values, 0o600)); err != nil {
		r.cleanupFn()
		return nil, err
	}
	return r, nil
}

func (g *globals) catalogInstall(ctx context.Context, addr, helmBin, pkg string, o *installOptions) error {
	out := g.streams.Out
	start := time.Now()
	name := cmp.Or(o.name, pkg)
	if errs := validation.IsDNS1035Label(name); len(errs) > 0 || len(name) > catalog.MaxServiceName {
		return usageError("--name %q: a service's name is a DNS label (lower-case letters, digits and '-', starting with a letter) of at most %d characters, as its objects' names are made of it", name, catalog.MaxServiceName)
	}
	affinity, err := parsePlacement(o.placement)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "==> reading package %s from the catalog at %s\n", pkg, addr)
	r, err := prepare(ctx, addr, pkg, o.version, o.plan, o.set)
	if err != nil {
		return err
	}
	defer r.cleanupFn()
	c, err := g.hubClient()
	if err != nil {
		return err
	}
	// Nothing is installed before every check has passed.
	var existing v1alpha1.Placement
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: name}, &existing); err == nil {
		if existing.Labels[v1alpha1.LabelCatalogPackage] != "" {
			return fmt.Errorf("%s/%s is installed already (package %s); use convoy catalog upgrade %s -n %s, or another --name",
				o.namespace, name, existing.Labels[v1alpha1.LabelCatalogPackage], name, o.namespace)
		}
		return fmt.Errorf("namespace %s has a Placement %s already (not a catalog service); pick another --name", o.namespace, name)
	} else if !apierrors.IsNotFound(err) {
		return hubError("", err)
	}
	spec := catalogPlacementSpec(name, affinity, nil)
	var clusters v1alpha1.ClusterList
	if err := c.List(ctx, &clusters); err != nil {
		return hubError("", err)
	}
	var snap []scheduler.Cluster
	for i := range clusters.Items {
		snap = append(snap, plan.ClusterOf(&clusters.Items[i]))
	}
	d := scheduler.Schedule(snap, spec, nil)
	var ready []string
	for _, ch := range d.Clusters {
		for _, s := range snap {
			if s.Name == ch.Name && s.Healthy {
				ready = append(ready, ch.Name)
			}
		}
	}
	if len(ready) == 0 {
		return fmt.Errorf("the placement %s matches no Ready cluster (%s); nothing was installed. convoy get clusters shows them", describeAffinity(affinity), d.Message)
	}
	spec.Rollout = wavesOf(ready)
	helm := catalog.Helm{Bin: helmBin, Kubeconfig: g.kubeconfigPath()}
	fmt.Fprintf(out, "==> checking the values of %s %s, plan %s\n", r.pkg.Name, r.pkg.Version, r.plan.Name)
	if _, err := helm.Run(ctx, append([]string{"template", name, "-n", o.namespace}, r.helmArgs()...)...); err != nil {
		return fmt.Errorf("the values are not valid for package %s (nothing was installed): %w", r.pkg.Name, err)
	}
	fmt.Fprintf(out, "==> installing the release %s/%s at the hub\n", o.namespace, name)
	if _, err := helm.Run(ctx, append([]string{"install", name, "-n", o.namespace, "--create-namespace"}, r.helmArgs()...)...); err != nil {
		return fmt.Errorf("install %s at the hub: %w", name, err)
	}
	p := &v1alpha1.Placement{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.namespace, Labels: map[string]string{
			v1alpha1.LabelCatalogPackage: r.pkg.Name, v1alpha1.LabelCatalogPlan: r.plan.Name},
			Annotations: map[string]string{annotationCatalogValues: setsJSON(r.sets)}},
		Spec: spec,
	}
	if err := c.Create(ctx, p); err != nil {
		// Take the release back, so that nothing is left half installed.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, uerr := helm.Run(uctx, "uninstall", name, "-n", o.namespace); uerr != nil {
			return fmt.Errorf("the release is installed at the hub, but its Placement could not be made: %w; convoy catalog uninstall %s -n %s removes the release", err, name, o.namespace)
		}
		return fmt.Errorf("the Placement of %s could not be made, and the release was removed again: %w", name, err)
	}
	fmt.Fprintf(out, "==> placing %s on %s\n", name, strings.Join(ready, ", "))
	if !o.wait {
		return nil
	}
	if err := waitAvailable(ctx, c, out, client.ObjectKeyFromObject(p), 0, start, o.timeout, r.pkg.JobTemplate()); err != nil {
		return err
	}
	if r.pkg.JobTemplate() {
		fmt.Fprintf(out, "%s %s (plan %s) has run as %s/%s: its Job completed on %s after %s (Available).\n", r.pkg.Name, r.pkg.Version, r.plan.Name,
			o.namespace, name, plural(len(ready), "cluster"), time.Since(start).Round(time.Second))
		fmt.Fprintf(out, "The Job and its pod's log stay on each cluster until convoy catalog uninstall %s -n %s.\n", name, o.namespace)
		return nil
	}
	fmt.Fprintf(out, "%s %s (plan %s) is Available as %s/%s on %s after %s.\n", r.pkg.Name, r.pkg.Version, r.plan.Name,
		o.namespace, name, plural(len(ready), "cluster"), time.Since(start).Round(time.Second))
	if r.pkg.Meta.Type != "" {
		fmt.Fprintf(out, "Its connection details are in Secret %s on each of them; a ServiceBinding hands them to your app.\n", v1alpha1.BindingSecretName(name))
	}
	return nil
}

func (g *globals) catalogUpgrade(ctx context.Context, addr, helmBin, name string, o *installOptions) error {
	out := g.streams.Out
	start := time.Now()
	c, err := g.hubClient()
	if err != nil {
		return err
	}
	var p v1alpha1.Placement
	if err := c.Get(ctx, client.ObjectKey{Namespace: o.namespace, Name: name}, &p); apierrors.IsNotFound(err) || (err == nil && p.Labels[v1alpha1.LabelCatalogPackage] == "") {
		return fmt.Errorf("no catalog service %s in namespace %s; convoy catalog install installs one", name, o.namespace)
	} else if err != nil {
		return hubError("", err)
	}
	planName := o.plan
	if planName == "" {
		if _, v, _ := splitSets(o.set, ""); v == "" {
			planName = p.Labels[v1alpha1.LabelCatalogPlan]
		}
	}
	r, err := prepare(ctx, addr, p.Labels[v1alpha1.LabelCatalogPackage], o.version, planName, o.set)
	if err != nil {
		return err
	}
	defer r.cleanupFn()
	if r.pkg.JobTemplate() {
		return fmt.Errorf("%s/%s is a job template's run (%s): a Job cannot change once made, so there is nothing to upgrade; to run it again with other values or another version, convoy catalog uninstall %s -n %s, then install it again",
			o.namespace, name, r.pkg.Name, name, o.namespace)
	}
	// The new chart's defaults, the plan's values, then the user's own values of every install
	// and upgrade so far, in order (a later one wins): never the old chart's defaults or the
	// old plan's values, which --reuse-values would keep.
	var old []string
	if raw := p.Annotations[annotationCatalogValues]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &old); err != nil {
			return fmt.Errorf("the values of %s/%s kept in its Placement's annotation %s are not readable: %w", o.namespace, name, annotationCatalogValues, err)
		}
	}
	r.sets = append(old, r.sets...)
	helm := catalog.Helm{Bin: helmBin, Kubeconfig: g.kubeconfigPath()}
	fmt.Fprintf(out, "==> checking the values of %s %s, plan %s\n", r.pkg.Name, r.pkg.Version, r.plan.Name)
	if _, err := helm.Run(ctx, append([]string{"upgrade", name, "-n", o.namespace, "--reset-values", "--dry-run=server"}, r.helmArgs()...)...); err != nil {
		return fmt.Errorf("the upgrade is not valid (nothing was changed): %w", err)
	}
	before, err := helm.Run(ctx, "get", "manifest", name, "-n", o.namespace)
	if err != nil {
		return err
	}
	oldTarget := ""
	if p.Status.Rollout != nil {
		oldTarget = p.Status.Rollout.Target
	}
	fmt.Fprintf(out, "==> upgrading the release %s/%s at the hub to %s %s\n", o.namespace, name, r.pkg.Name, r.pkg.Version)
	if _, err := helm.Run(ctx, append([]string{"upgrade", name, "-n", o.namespace, "--reset-values"}, r.helmArgs()...)...); err != nil {
		if strings.Contains(err.Error(), "field is immutable") {
			return fmt.Errorf("upgrade %s at the hub: the change touches a field Kubernetes cannot change in place (a StatefulSet's volumes: its plan or persistence); nothing was changed. Back up, uninstall and install it again: %w", name, err)
		}
		return fmt.Errorf("upgrade %s at the hub (nothing was changed on the clusters): %w", name, err)
	}
	after, err := helm.Run(ctx, "get", "manifest", name, "-n", o.namespace)
	if err != nil {
		return err
	}
	if string(before) == string(after) {
		oldTarget = "" // the templates are the same: no new revision rolls out
	}
	if p.Labels[v1alpha1.LabelCatalogPlan] != r.plan.Name || p.Annotations[annotationCatalogValues] != setsJSON(r.sets) {
		patch := client.MergeFrom(p.DeepCopy())
		p.Labels[v1alpha1.LabelCatalogPlan] = r.plan.Name
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[annotationCatalogValues] = setsJSON(r.sets)
		if err := c.Patch(ctx, &p, patch); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "==> rolling out, one cluster per wave")
	if !o.wait {
		return nil
	}
	if err := waitRollout(ctx, c, out, client.ObjectKeyFromObject(&p), oldTarget, start, o.timeout); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s/%s runs %s %s (plan %s) everywhere after %s.\n", o.namespace, name, r.pkg.Name, r.pkg.Version, r.plan.Name, time.Since(start).Round(time.Second))
	return nil
}

func newCatalogUninstallCmd(g *globals) *cobra.Command {
	var namespace string
	var deleteData, force bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "uninstall NAME",
		Short: "Remove a catalog service from its clusters and the hub; its volumes stay unless --delete-data",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, out, name := cmd.Context(), g.streams.Out, args[0]
			helmBin, err := catalog.FindHelm(kubeproc.DefaultBinDir())
			if err != nil {
				return err
			}
			c, err := g.hubClient()
			if err != nil {
				return err
			}
			var p v1alpha1.Placement
			err = c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &p)
			switch {
			case err == nil && p.Labels[v1alpha1.LabelCatalogPackage] == "":
				return fmt.Errorf("%s/%s is a Placement, not a catalog service; delete it with kubectl", namespace, name)
			case err != nil && !apierrors.IsNotFound(err):
				return hubError("", err)
			}
			helm := catalog.Helm{Bin: helmBin, Kubeconfig: g.kubeconfigPath()}
			if err != nil {
				// No Placement: an uninstall that did not finish, or a wrong name. Only a
				// release of that name says the service was ever there.
				if _, serr := helm.Run(ctx, "status", name, "-n", namespace); serr != nil {
					return fmt.Errorf("there is no catalog service %s in namespace %s (no Placement and no Helm release of that name); convoy catalog list shows packages, kubectl get placements -n %s what runs", name, namespace, namespace)
				}
			}
			var bs v1alpha1.ServiceBindingList
			if err := c.List(ctx, &bs, client.InNamespace(namespace)); err != nil {
				return hubError("", err)
			}
			var users []string
			for _, b := range bs.Items {
				if b.Spec.Service.Name == name {
					users = append(users, b.Name)
				}
			}
			if len(users) > 0 && !force {
				return fmt.Errorf("service %s/%s is bound to workloads by ServiceBinding %s; delete the bindings first, or give --force (the workloads then lose the service)",
					namespace, name, strings.Join(users, ", "))
			}
			if err == nil {
				fmt.Fprintf(out, "==> removing %s/%s from %d clusters\n", namespace, name, len(p.Status.Clusters))
				if err := c.Delete(ctx, &p); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
				if err := waitGone(ctx, c, client.ObjectKeyFromObject(&p), timeout); err != nil {
					return err
				}
			}
			if deleteData {
				// Where the service ran; after an uninstall that did not finish, every cluster.
				var where []string
				for _, s := range p.Status.Clusters {
					where = append(where, s.Cluster)
				}
				if err != nil {
					var all v1alpha1.ClusterList
					if err := c.List(ctx, &all); err != nil {
						return err
					}
					for _, cl := range all.Items {
						where = append(where, cl.Name)
					}
				}
				if err := g.deleteVolumes(ctx, out, namespace, name, where); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, "==> uninstalling the release %s/%s at the hub\n", namespace, name)
			if _, err := helm.Run(ctx, "uninstall", name, "-n", namespace); err != nil && !strings.Contains(err.Error(), "not found") {
				return err
			}
			if deleteData {
				fmt.Fprintf(out, "%s/%s is uninstalled, with its volumes.\n", namespace, name)
			} else {
				fmt.Fprintf(out, "%s/%s is uninstalled. Its volumes, if it has any, stay on the clusters (--delete-data removes them).\n", namespace, name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "the namespace at the hub")
	cmd.Flags().BoolVar(&deleteData, "delete-data", false, "also delete the service's volumes (PersistentVolumeClaims) on every cluster")
	cmd.Flags().BoolVar(&force, "force", false, "uninstall even while ServiceBindings use the service")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the clusters")
	return cmd
}

// catalogPlacementSpec is the Placement of catalog service name: every object of its release,
// with what they depend on, on the clusters affinity allows.
func catalogPlacementSpec(name string, affinity v1alpha1.ClusterAffinity, overrides []v1alpha1.Override) v1alpha1.PlacementSpec {
	return v1alpha1.PlacementSpec{
		Resources: []v1alpha1.ResourceSelector{{LabelSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"app.kubernetes.io/instance": name}}}},
		Clusters:              affinity,
		PropagateDependencies: ptr.To(true),
		Overrides:             overrides,
	}
}

// wavesOf makes a rollout of one cluster per wave, in name order; clusters added later to the
// Placement form a last wave.
func wavesOf(clusters []string) *v1alpha1.RolloutStrategy {
	s := &v1alpha1.RolloutStrategy{ProgressDeadlineSeconds: ptr.To(int32(600))}
	for _, c := range slices.Sorted(slices.Values(clusters)) {
		s.Waves = append(s.Waves, v1alpha1.RolloutWave{Name: c, Clusters: v1alpha1.WaveClusters{Names: []string{c}}})
	}
	return s
}

// throughHub is a client of cluster's API server through the hub's cluster proxy, as the hub's
// user (cfg) is known there.
func throughHub(cfg *rest.Config, cluster string) (kubernetes.Interface, error) {
	ccfg := rest.CopyConfig(cfg)
	ccfg.Host = strings.TrimSuffix(cfg.Host, "/") + v1alpha1.ClusterProxyPath(cluster)
	return kubernetes.NewForConfig(ccfg)
}

// deleteVolumes deletes the service's PersistentVolumeClaims (those labelled with its
// instance, as volumeClaimTemplates label them) on every cluster it ran on, through the hub's
// cluster proxy, once the Placement has removed the rest.
func (g *globals) deleteVolumes(ctx context.Context, out io.Writer, namespace, name string, clusters []string) error {
	cfg, err := g.restConfig()
	if err != nil {
		return err
	}
	var failed []string
	for _, cluster := range clusters {
		cs, err := throughHub(cfg, cluster)
		if err != nil {
			return err
		}
		sel := "app.kubernetes.io/instance=" + name
		pvcs, err := cs.CoreV1().PersistentVolumeClaims(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err == nil {
			err = cs.CoreV1().PersistentVolumeClaims(namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel})
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", cluster, err))
			continue
		}
		fmt.Fprintf(out, "    %-10s %d volumes deleted\n", cluster, len(pvcs.Items))
	}
	if len(failed) > 0 {
		return fmt.Errorf("the service is gone from its clusters but some of its volumes could not be deleted (run the uninstall again with --delete-data when they are reachable): %s", strings.Join(failed, "; "))
	}
	return nil
}

func describeAffinity(a v1alpha1.ClusterAffinity) string {
	var parts []string
	for _, f := range []struct {
		k string
		v []string
	}{{"regions", a.Regions}, {"zones", a.Zones}, {"environments", a.Environments}, {"clusters", a.Names}} {
		if len(f.v) > 0 {
			parts = append(parts, f.k+"="+strings.Join(f.v, ","))
		}
	}
	if len(parts) == 0 {
		return "(every cluster)"
	}
	return strings.Join(parts, " ")
}

// waitAvailable waits until the Placement's status, of at least generation gen, has every
// chosen cluster Available, printing each cluster's progress as it changes. With jobs (a job
// template's), a Job that failed on a cluster ends the wait at once: it will not complete.
func waitAvailable(ctx context.Context, c client.Client, out io.Writer, key client.ObjectKey, gen int64, start time.Time, timeout time.Duration, jobs bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := map[string]string{}
	for {
		var p v1alpha1.Placement
		if err := c.Get(ctx, key, &p); err != nil {
			if ctx.Err() != nil {
				return timeoutErr(c, key, last, timeout)
			}
			return err
		}
		done := p.Status.ObservedGeneration >= max(gen, p.Generation) && len(p.Status.Clusters) > 0
		for _, s := range p.Status.Clusters {
			state := "waiting for its agent"
			switch {
			case s.Error != "":
				state = "failing: " + s.Error
			case s.Available:
				state = "Available"
			case s.Applied:
				state = "applied, starting"
			}
			if !s.Available {
				done = false
				if jobs && s.Applied {
					if err := failedJob(ctx, c, key, s.Cluster); err != nil {
						return err
					}
				}
			}
			if last[s.Cluster] != state {
				fmt.Fprintf(out, "    %-10s %s (%s)\n", s.Cluster, state, time.Since(start).Round(time.Second))
				last[s.Cluster] = state
			}
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return timeoutErr(c, key, last, timeout)
		case <-time.After(time.Second):
		}
	}
}

// workKey names the Work that the Placement key makes for a cluster.
func workKey(key client.ObjectKey, cluster string) client.ObjectKey {
	p := &v1alpha1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	return client.ObjectKey{Namespace: v1alpha1.ClusterNamespace(cluster), Name: plan.WorkName(p)}
}

// failedJob says, from the Work's status as the cluster's agent reported it, whether a Job of
// the Placement failed there.
func failedJob(ctx context.Context, c client.Client, key client.ObjectKey, cluster string) error {
	var w v1alpha1.Work
	if err := c.Get(ctx, workKey(key, cluster), &w); err != nil {
		return nil // not there yet, or the hub is slow: the wait goes on
	}
	for _, r := range w.Status.Resources {
		if r.Kind == "Job" && r.Health == v1alpha1.HealthDegraded {
			return fmt.Errorf("the Job %s of %s failed on %s: %s\nits pod's log stays there (convoy cluster kubeconfig %s; kubectl logs -n %s job/%s); convoy catalog uninstall %s -n %s removes it",
				r.Name, key, cluster, r.Message, cluster, key.Namespace, r.Name, key.Name, key.Namespace)
		}
	}
	return nil
}

// timeoutErr names the clusters that are not Available and, from their Works' status as their
// agents reported it, the resources that are not healthy there.
func timeoutErr(c client.Client, key client.ObjectKey, last map[string]string, timeout time.Duration) error {
	var bad []string
	for _, cl := range slices.Sorted(maps.Keys(last)) {
		if last[cl] == "Available" {
			continue
		}
		line := cl + ": " + last[cl]
		var w v1alpha1.Work
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.Get(ctx, workKey(key, cl), &w)
		cancel()
		if err == nil {
			for _, r := range w.Status.Resources {
				if r.Health != "" && r.Health != v1alpha1.HealthHealthy {
					line += fmt.Sprintf("; %s %s is %s", r.Kind, r.Name, r.Health)
					if r.Message != "" {
						line += ": " + r.Message
					}
				}
			}
		}
		bad = append(bad, line)
	}
	return fmt.Errorf("%s is not Available everywhere after %s:\n  %s\nconvoy status %s shows more; convoy catalog uninstall %s -n %s removes it",
		key, timeout, strings.Join(bad, "\n  "), key, key.Name, key.Namespace)
}

// waitRollout waits until the Placement's rollout has reached every cluster and all are
// Available.
// oldTarget is the revision the rollout had before the templates changed ("" when they did not):
// the wait is over once the rollout has another target, complete.
func waitRollout(ctx context.Context, c client.Client, out io.Writer, key client.ObjectKey, oldTarget string, start time.Time, timeout time.Duration) error {
	ctx2, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lastPhase := ""
	for {
		var p v1alpha1.Placement
		if err := c.Get(ctx2, key, &p); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		r := p.Status.Rollout
		switch {
		case r == nil && p.Spec.Rollout != nil, r != nil && oldTarget != "" && r.Target == oldTarget:
			goto next // the new revision has not started rolling out yet
		case r != nil:
			phase := fmt.Sprintf("%s %s", r.Phase, r.Message)
			if phase != lastPhase {
				fmt.Fprintf(out, "    rollout %s (%s)\n", phase, time.Since(start).Round(time.Second))
				lastPhase = phase
			}
			if r.Phase == v1alpha1.RolloutPaused || r.Phase == v1alpha1.RolloutAborted {
				return fmt.Errorf("the rollout of %s is %s: %s; convoy rollout status %s says more", key, r.Phase, r.Message, key)
			}
			if r.Phase != v1alpha1.RolloutComplete {
				goto next
			}
		}
		return waitAvailable(ctx, c, out, key, p.Generation, start, time.Until(start.Add(timeout)), false)
	next:
		select {
		case <-ctx2.Done():
			return fmt.Errorf("the rollout of %s has not finished after %s; convoy rollout status %s says where it is", key, timeout, key)
		case <-time.After(time.Second):
		}
	}
}

// waitApplied waits until every cluster has applied the Placement's current generation, or
// failed to; it names the clusters that did neither in time.
func waitApplied(ctx context.Context, c client.Client, key client.ObjectKey, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var p v1alpha1.Placement
		if err := c.Get(ctx, key, &p); err != nil {
			return err
		}
		var waiting []string
		for _, s := range p.Status.Clusters {
			if !s.Applied && s.Error == "" {
				waiting = append(waiting, s.Cluster)
			}
		}
		if p.Status.ObservedGeneration >= p.Generation && len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not applied after %s by %s", timeout, strings.Join(waiting, ", "))
		case <-time.After(time.Second):
		}
	}
}

// waitGone waits until the Placement is deleted (its agents removed what it placed).
func waitGone(ctx context.Context, c client.Client, key client.ObjectKey, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var p v1alpha1.Placement
		if err := c.Get(ctx, key, &p); apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is still being removed from its clusters after %s; convoy status %s shows which", key, timeout, key)
		case <-time.After(time.Second):
		}
	}
}

// plural is "1 cluster", "2 clusters".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
