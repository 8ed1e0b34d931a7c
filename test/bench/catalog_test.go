package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/provider/local"
)

// BenchmarkCatalog measures the service catalog on `convoy up`'s fleet (three clusters of two
// real nodes): `convoy package push` of the Redis and PostgreSQL packages (their images made
// from Debian packages; the .deb files cached), and `convoy catalog install` of each to all
// three clusters, from the command to Available everywhere, as the command reports it; and
// `convoy package test` of a package `convoy package init` made.
func BenchmarkCatalog(b *testing.B) {
	hubtest.RealNodes(b, local.MissingForRealNodes)
	root := hubtest.RepoRoot(b)
	convoy := filepath.Join(root, "bin", "convoy")
	dataDir := filepath.Join(b.TempDir(), "convoy")
	env := append(os.Environ(), "CONVOY_BIN_DIR="+hubtest.BinDir(b), "CONVOY_DATA_DIR="+dataDir)
	run := func(args ...string) (string, time.Duration) {
		start := time.Now()
		cmd := exec.Command(convoy, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("convoy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), time.Since(start)
	}
	b.Cleanup(func() {
		cmd := exec.Command(convoy, "down", "--purge")
		cmd.Env = env
		_ = cmd.Run()
	})
	run("up", "--edge-addresses", "127.75.0.0/24")
	fmt.Printf("\nCatalog benchmark: `convoy up`'s fleet of 3 clusters of 2 real nodes\nmachine: %s\n", Machine())
	for _, pkg := range []string{"redis", "postgres"} {
		_, push := run("package", "push", filepath.Join(root, "catalog", pkg))
		_, again := run("package", "push", filepath.Join(root, "catalog", pkg))
		out, install := run("catalog", "install", pkg, "--name", "b-"+pkg, "-n", "bench")
		if !strings.Contains(out, "on 3 clusters") {
			b.Fatalf("install of %s:\n%s", pkg, out)
		}
		_, uninstall := run("catalog", "uninstall", "b-"+pkg, "-n", "bench", "--delete-data")
		fmt.Printf("%-8s package push %s (again, nothing new: %s); catalog install to Available in 3 clusters %s; uninstall --delete-data %s\n",
			pkg, push.Round(100*time.Millisecond), again.Round(100*time.Millisecond), install.Round(100*time.Millisecond), uninstall.Round(100*time.Millisecond))
		b.ReportMetric(install.Seconds(), "s-install-"+pkg)
	}
	// A packager's loop: a new package, tested in a throwaway cluster of one real node.
	dir := b.TempDir()
	run("package", "init", "kv", "--dir", dir)
	out, test := run("package", "test", filepath.Join(dir, "kv"))
	if !strings.Contains(out, "passed its tests") {
		b.Fatalf("package test:\n%s", out)
	}
	fmt.Printf("package test of `convoy package init`'s package (lint, image, a cluster of 1 real node created, install, helm test, cluster deleted): %s\n", test.Round(100*time.Millisecond))
	b.ReportMetric(test.Seconds(), "s-package-test")
}
