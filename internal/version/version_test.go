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
	for name, want := range map[string]string{"KUBE_VERSION": Kubernetes, "KINE_VERSION": Kine, "KWOK_VERSION": Kwok, "HELM_VERSION": Helm} {
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
