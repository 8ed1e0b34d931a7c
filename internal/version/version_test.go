package version

import (
	"os"
	"regexp"
	"testing"
)

// TestPinsAgreeWithTheBuild checks that the versions here are the ones hack/tools.sh builds.
func TestPinsAgreeWithTheBuild(t *testing.T) {
	raw, err := os.ReadFile("../../hack/tools.sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"KUBE_VERSION": Kubernetes, "KINE_VERSION": Kine, "KWOK_VERSION": Kwok, "HELM_VERSION": Helm, "GATEWAY_API_VERSION": GatewayAPI, "KUBE_PREVIOUS_VERSION": KubernetesPrevious} {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(raw)
		if m == nil {
			t.Errorf("hack/tools.sh does not set %s", name)
			continue
		}
		if string(m[1]) != want {
			t.Errorf("hack/tools.sh builds %s=%s, but internal/version says %s", name, m[1], want)
		}
	}
}

// TestImagePinsAgreeWithTheBuild checks that the versions here are the ones hack/images/go.mod
// builds.
func TestImagePinsAgreeWithTheBuild(t *testing.T) {
	raw, err := os.ReadFile("../../hack/images/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for mod, want := range map[string]string{"github.com/coredns/coredns": CoreDNS, "github.com/rancher/local-path-provisioner": LocalPath} {
		m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(mod) + ` (\S+)$`).FindSubmatch(raw)
		if m == nil {
			t.Errorf("hack/images/go.mod does not require %s", mod)
			continue
		}
		if string(m[1]) != want {
			t.Errorf("hack/images/go.mod builds %s %s, but internal/version says %s", mod, m[1], want)
		}
	}
}

// TestObservePinAgreesWithTheBuild checks that VictoriaMetrics is the version
// hack/observe/go.mod builds.
func TestObservePinAgreesWithTheBuild(t *testing.T) {
	raw, err := os.ReadFile("../../hack/observe/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/VictoriaMetrics/VictoriaMetrics (\S+)`).FindSubmatch(raw)
	if m == nil {
		t.Fatal("hack/observe/go.mod does not require github.com/VictoriaMetrics/VictoriaMetrics")
	}
	if string(m[1]) != VictoriaMetrics {
		t.Errorf("hack/observe/go.mod builds VictoriaMetrics %s, but internal/version says %s", m[1], VictoriaMetrics)
	}
}
