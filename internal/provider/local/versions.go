package local

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/version"
)

// binariesFor finds the control-plane binaries of a Kubernetes version: the default version's
// are in binDir itself (make tools), others in binDir/kubernetes/VERSION.
func binariesFor(binDir, v string) kubeproc.Binaries {
	if v == "" || v == version.Kubernetes {
		return kubeproc.Binaries{Dir: binDir}
	}
	return kubeproc.Binaries{Dir: filepath.Join(binDir, "kubernetes", v)}
}

// controlPlane lists the binaries a local cluster runs.
var controlPlane = []string{kubeproc.Kine, kubeproc.KubeAPIServer, kubeproc.KubeControllerManager, kubeproc.KubeScheduler, kubeproc.Kwok}

// AvailableVersions lists the Kubernetes versions binDir has every binary for, sorted.
func AvailableVersions(binDir string) []string {
	var out []string
	if hasAll(binDir, version.Kubernetes) {
		out = append(out, version.Kubernetes)
	}
	entries, _ := os.ReadDir(filepath.Join(binDir, "kubernetes"))
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "v") && e.Name() != version.Kubernetes && hasAll(binDir, e.Name()) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

func hasAll(binDir, v string) bool {
	b := binariesFor(binDir, v)
	for _, name := range controlPlane {
		// kine and kwok do not depend on the Kubernetes version; they always come from binDir.
		if name == kubeproc.Kine || name == kubeproc.Kwok {
			if _, err := (kubeproc.Binaries{Dir: binDir}).Path(name); err != nil {
				return false
			}
			continue
		}
		if _, err := b.Path(name); err != nil {
			return false
		}
	}
	return true
}

// checkVersion explains why v cannot be run, or returns nil.
func checkVersion(binDir, v string) error {
	if v == "" {
		v = version.Kubernetes
	}
	avail := AvailableVersions(binDir)
	if slices.Contains(avail, v) {
		return nil
	}
	if len(avail) == 0 {
		return fmt.Errorf("no Kubernetes binaries in %s: run `make tools` to build them", binDir)
	}
	return fmt.Errorf("Kubernetes %s is not available on this hub (available: %s); pick one of those, or build its binaries into %s", v, strings.Join(avail, ", "), filepath.Join(binDir, "kubernetes", v))
}

// reportedVersion is the version a Kubernetes binary says it is: `kubelet --version` prints
// "Kubernetes v1.37.2", what the kubelet reports in its Node's status.nodeInfo. A version
// directory may hold another version's binaries (tests use stand-ins), so an upgraded node is
// awaited on what its kubelet will report, not on the directory's name.
func reportedVersion(path string) (string, error) {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("ask %s its version: %w", path, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 || f[0] != "Kubernetes" {
		return "", fmt.Errorf("%s --version printed %q, not \"Kubernetes VERSION\": rebuild it (make tools)", path, out)
	}
	return f[1], nil
}
