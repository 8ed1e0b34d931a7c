package observe_test

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convoy-dev/convoy/internal/hubtest"
	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
)

// TestMemberScrapeConfigAccepted: vmagent itself (bin/vmagent -dryRun) accepts every shape of
// the configuration a collector gets, and the shapes scrape what they say.
func TestMemberScrapeConfigAccepted(t *testing.T) {
	bin, err := kubeproc.Binaries{Dir: hubtest.BinDir(t)}.Path(kubeproc.VMAgent)
	if err != nil {
		t.Skip(err)
	}
	base := observe.MemberTarget{APIServer: "https://127.0.0.1:6443", CAFile: "/ca.crt", CertFile: "/c.crt", KeyFile: "/c.key"}
	for name, tc := range map[string]struct {
		target    observe.MemberTarget
		jobs, not []string
	}{
		"in-cluster": {target: with(base, func(m *observe.MemberTarget) { m.KubeState = "127.0.0.1:9100" }),
			jobs: []string{"apiserver", "kubelet", "cadvisor", "pods", "kube-state-metrics", "follow_redirects: false", "replacement: agent", "etcd_request_duration_seconds|"}},
		"one network": {target: with(base, func(m *observe.MemberTarget) { m.Pods.Network = netip.MustParsePrefix("10.64.0.0/18") }),
			jobs: []string{"pods", `10\.64\.(0|1|`}, not: []string{"kube-state-metrics"}},
		"no pods": {target: with(base, func(m *observe.MemberTarget) { m.Pods.None = true }),
			jobs: []string{"apiserver"}, not: []string{"job_name: pods"}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := observe.MemberScrapeConfig(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range tc.jobs {
				if !strings.Contains(string(cfg), j) {
					t.Errorf("the configuration lacks %q:\n%s", j, cfg)
				}
			}
			for _, j := range tc.not {
				if strings.Contains(string(cfg), j) {
					t.Errorf("the configuration has %q:\n%s", j, cfg)
				}
			}
			file := filepath.Join(t.TempDir(), "scrape.yaml")
			if err := os.WriteFile(file, cfg, 0o600); err != nil {
				t.Fatal(err)
			}
			// A job it cannot parse, vmagent skips with an error in its log, and exits 0.
			out, err := exec.Command(bin, "-promscrape.config="+file, "-dryRun").CombinedOutput()
			if err != nil || strings.Contains(string(out), "\terror\t") {
				t.Errorf("vmagent refuses the configuration: %v\n%s\n%s", err, out, cfg)
			}
		})
	}
}

func with(m observe.MemberTarget, f func(*observe.MemberTarget)) observe.MemberTarget {
	f(&m)
	return m
}
