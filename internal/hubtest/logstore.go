package hubtest

import (
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/kubeproc"
	"github.com/convoy-dev/convoy/internal/observe"
)

// LogStore starts the real log store (bin/victoria-logs) on a free port, with its data in a
// temporary directory, waits until it answers, and stops it when the test ends. The test is
// skipped when bin/ has no victoria-logs.
func LogStore(t testing.TB) *url.URL {
	t.Helper()
	bin, err := kubeproc.Binaries{Dir: BinDir(t)}.Path(kubeproc.VictoriaLogs)
	if err != nil {
		t.Skip(err)
	}
	port, err := kubeproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	store := exec.Command(bin, observe.LogStore{DataDir: t.TempDir(), Port: port}.Args()...)
	if err := store.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Process.Kill(); _ = store.Wait() })
	u := &url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(port)}
	Eventually(t, "the log store answering", 30*time.Second, func() (bool, error) {
		resp, err := http.Get(u.String() + "/health")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return true, nil
	})
	return u
}
