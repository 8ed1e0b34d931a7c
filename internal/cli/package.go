package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/convoy-dev/convoy/api/v1alpha1"
	"github.com/convoy-dev/convoy/internal/catalog"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

func newPackageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "package",
		Short: "The packager's tools: lint a catalog package and push it, with its images, to the fleet registry",
		Long: `A package is a Helm chart with a ` + v1alpha1.PackageFile + ` beside its Chart.yaml: its category,
the connection outputs its Secret NAME-binding holds, its plans, and the Debian packages its
images are made of. docs/PACKAGING.md walks through one.`,
	}
	cmd.AddCommand(newPackageInitCmd(g), newPackageLintCmd(g), newPackagePushCmd(g), newPackageTestCmd(g))
	return cmd
}

func newPackageInitCmd(g *globals) *cobra.Command {
	var dir string
	o := catalog.ScaffoldOptions{}
	cmd := &cobra.Command{
		Use:   "init NAME",
		Short: "Write a new package into DIR/NAME that passes lint as written: by default Debian's memcached, else --debian PKG --port N",
		Long: `Write a new package: a chart that runs one Debian package in a StatefulSet (a volume when
persistence.enabled), its ClusterIP Service, its connection Secret (host, port and a password kept
across upgrades), a Helm test, values with a schema, plans standard and ephemeral, and the image's
Debian packages in ` + v1alpha1.PackageFile + `. Without --debian it runs memcached on port 11211; with
another package, edit what is marked TODO(packager) (its command, above all).`,
		Example: `  convoy package init demo-cache
  convoy package init kv --debian redis-server --port 6379 --type redis --category cache --dir catalog`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			target := filepath.Join(dir, o.Name)
			files, err := catalog.Scaffold(target, o)
			if err != nil {
				return err
			}
			out := g.streams.Out
			fmt.Fprintf(out, "package %s written to %s:\n", o.Name, target)
			for _, f := range files {
				fmt.Fprintf(out, "  %s\n", f)
			}
			if o.Debian != catalog.ScaffoldDebian {
				fmt.Fprintf(out, "Edit what is marked TODO(packager) first: grep -rn 'TODO(packager)' %s\n", target)
			}
			fmt.Fprintf(out, "Next:\n  convoy package lint %s\n  convoy package push %s\n", target, target)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".", "the directory to write the package's directory NAME in")
	cmd.Flags().StringVar(&o.Debian, "debian", catalog.ScaffoldDebian, "the Debian package the service's image runs")
	cmd.Flags().IntVar(&o.Port, "port", 0, "the TCP port the service listens on (default 11211 for memcached; needed for any other package)")
	cmd.Flags().StringVar(&o.Category, "category", "", "the category: "+strings.Join(v1alpha1.PackageCategories, ", ")+" (default cache for memcached, else other)")
	cmd.Flags().StringVar(&o.Type, "type", "", "the Service Binding type of the connection Secret (default memcached for memcached, else NAME)")
	cmd.Flags().StringVar(&o.AppVersion, "app-version", "1.0.0", "the service's version: the chart's appVersion and the image's tag")
	return cmd
}

func newPackageLintCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "lint [DIR]",
		Short: "Check a package: Helm's lint, the metadata, and that every plan renders the connection Secret with every output (a job template: its Job)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			helmBin, err := catalog.FindHelm(kubeproc.DefaultBinDir())
			if err != nil {
				return err
			}
			p, err := catalog.Lint(cmd.Context(), catalog.Helm{Bin: helmBin}, dir)
			if err != nil {
				return err
			}
			if p.JobTemplate() {
				fmt.Fprintf(g.streams.Out, "package %s %s is fine: Helm's lint passed and its %d plans render a batch/v1 Job (a job template: no connection Secret).\n",
					p.Name, p.Version, len(p.Meta.Plans))
				return nil
			}
			fmt.Fprintf(g.streams.Out, "package %s %s is fine: Helm's lint passed and its %d plans render the Secret %s with %s.\n",
				p.Name, p.Version, len(p.Meta.Plans), v1alpha1.BindingSecretName("NAME"), strings.Join(append([]string{"type", "provider"}, p.Meta.Outputs...), ", "))
			return nil
		},
	}
}

func newPackagePushCmd(g *globals) *cobra.Command {
	o := &imageOptions{}
	cmd := &cobra.Command{
		Use:   "push DIR...",
		Short: "Lint packages, make their images from Debian packages and push images and charts to the fleet registry's catalog",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := o.addr()
			if err != nil {
				return err
			}
			helmBin, err := catalog.FindHelm(kubeproc.DefaultBinDir())
			if err != nil {
				return err
			}
			cache := debianCache()
			helm := catalog.Helm{Bin: helmBin}
			out := g.streams.Out
			for _, dir := range args {
				start := time.Now()
				fmt.Fprintf(out, "==> linting %s\n", dir)
				p, err := catalog.Lint(cmd.Context(), helm, dir)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "==> making the images of %s %s\n", p.Name, p.Version)
				if err := catalog.PushImages(cmd.Context(), p, addr, cache, out); err != nil {
					return err
				}
				tmp, err := os.MkdirTemp("", "convoy-package-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				tgz, err := helm.Archive(cmd.Context(), dir, tmp)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "==> pushing the chart to %s/%s/%s:%s\n", addr, v1alpha1.CatalogRepository, p.Name, p.Version)
				if err := helm.PushChart(cmd.Context(), tgz, addr); err != nil {
					return err
				}
				fmt.Fprintf(out, "%s %s is in the catalog (%s): convoy catalog show %s\n", p.Name, p.Version, time.Since(start).Round(100*time.Millisecond), p.Name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.registry, "registry", "", "the fleet registry's address (default: the one the hub of --data-dir runs)")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", hub.DefaultDataDir(), "the hub's data dir ($CONVOY_DATA_DIR)")
	return cmd
}
