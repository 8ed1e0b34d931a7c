package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/convoy-dev/convoy/internal/catalog"
	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/kubeproc"
)

// taintPackageTest keeps every Placement off a package test's throwaway cluster.
const taintPackageTest = "catalog.convoy.dev/package-test"

func newPackageTestCmd(g *globals) *cobra.Command {
	o := &imageOptions{}
	var plan string
	var timeout time.Duration
	var keep bool
	cmd := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Install a package into a throwaway local cluster of one real node, run its Helm test hooks, and delete the cluster",
		Long: `test lints the package, pushes its images to the fleet registry, creates a local cluster of one
real node (tainted, so that no Placement sends it anything), installs the chart straight into
it with a plan's values, waits until everything is ready, runs the chart's test hooks
(helm test) and deletes the cluster, whatever happened.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			return g.packageTest(cmd.Context(), o, dir, plan, timeout, keep)
		},
	}
	cmd.Flags().StringVar(&plan, "plan", "", "the plan whose values are tested (default: the package's first)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long the install and the tests may take")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the cluster afterwards, to look into a failure")
	cmd.Flags().StringVar(&o.registry, "registry", "", "the fleet registry's address (default: the one the hub of --data-dir runs)")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", hub.DefaultDataDir(), "the hub's data dir ($CONVOY_DATA_DIR)")
	return cmd
}

func (g *globals) packageTest(ctx context.Context, o *imageOptions, dir, planName string, timeout time.Duration, keep bool) (err error) {
	out := g.streams.Out
	start := time.Now()
	phase := func(f string, a ...any) {
		fmt.Fprintf(out, "==> %s (%s)\n", fmt.Sprintf(f, a...), time.Since(start).Round(100*time.Millisecond))
	}
	addr, err := o.addr()
	if err != nil {
		return err
	}
	helmBin, err := catalog.FindHelm(kubeproc.DefaultBinDir())
	if err != nil {
		return err
	}
	helm := catalog.Helm{Bin: helmBin}
	phase("linting %s", dir)
	p, err := catalog.Lint(ctx, helm, dir)
	if err != nil {
		return err
	}
	pl, err := p.Plan(planName)
	if err != nil {
		return err
	}
	phase("making and pushing the images of %s %s", p.Name, p.Version)
	if err := catalog.PushImages(ctx, p, addr, debianCache(), out); err != nil {
		return err
	}
	hc, err := g.hubClient()
	if err != nil {
		return err
	}
	suffix := make([]byte, 2)
	_, _ = rand.Read(suffix)
	name := fmt.Sprintf("pkgtest-%.20s-%s", p.Name, hex.EncodeToString(suffix))
	copts := &createOptions{provider: "local", nodes: 1, nodeKind: "real", cpu: "4", memory: "16Gi", pods: 110}
	c, err := copts.cluster(name)
	if err != nil {
		return err
	}
	c.Spec.Taints = append(c.Spec.Taints, corev1.Taint{Key: taintPackageTest, Effect: corev1.TaintEffectNoSchedule})
	if err := checkCreatable(ctx, hc, c); err != nil {
		return err
	}
	phase("creating the throwaway cluster %s (1 real node)", name)
	// The cleanup comes first: a Create that failed late may still have made the cluster.
	defer func() {
		if keep {
			fmt.Fprintf(out, "Kept cluster %s: convoy cluster kubeconfig %s; convoy cluster delete %s when done.\n", name, name, name)
			return
		}
		phase("deleting the cluster %s", name)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if derr := hc.Delete(dctx, c); apierrors.IsNotFound(derr) {
			return
		} else if derr != nil {
			err = errors.Join(err, fmt.Errorf("the cluster %s could not be deleted: %v (convoy cluster delete %s)", name, derr, name))
			return
		}
		if _, werr := waitClusters(dctx, hc, []string{name}, out, time.Now(), 5*time.Minute, isGone); werr != nil {
			err = errors.Join(err, fmt.Errorf("the cluster %s is not gone: %v (convoy cluster delete %s)", name, werr, name))
		}
	}()
	if err := hc.Create(ctx, c); err != nil {
		return hubError("the hub", err)
	}
	if _, err := waitClusters(ctx, hc, []string{name}, out, start, 5*time.Minute, isUp); err != nil {
		return err
	}
	admin, err := adminKubeconfig(ctx, hc, name)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "convoy-package-test-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	kubeconfig, values := filepath.Join(tmp, "kubeconfig"), filepath.Join(tmp, "plan.json")
	raw := pl.Values
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	if err := os.WriteFile(kubeconfig, admin, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(values, raw, 0o600); err != nil {
		return err
	}
	member := catalog.Helm{Bin: helmBin, Kubeconfig: kubeconfig}
	phase("installing %s %s (plan %s) into %s and waiting until it is ready", p.Name, p.Version, pl.Name, name)
	if _, err := member.Run(ctx, "install", "test", dir, "-n", "package-test", "--create-namespace", "-f", values,
		"--wait", "--timeout", timeout.String()); err != nil {
		return fmt.Errorf("the package did not install and become ready: %w", err)
	}
	phase("running the test hooks")
	// No --logs: hooks that succeeded are deleted (hook-succeeded), and helm then fails to read them.
	logs, err := member.Run(ctx, "test", "test", "-n", "package-test", "--timeout", timeout.String())
	for l := range strings.Lines(string(logs)) {
		fmt.Fprintf(out, "    %s", l)
	}
	if err != nil {
		return fmt.Errorf("the package's tests failed (--keep keeps the cluster to look into it): %w", err)
	}
	phase("%s %s passed its tests", p.Name, p.Version)
	return nil
}

// debianCache is where the .deb files of images are kept.
func debianCache() string {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "convoy", "debian")
}
