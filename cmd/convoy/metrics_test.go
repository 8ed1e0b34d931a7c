package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMetricsQueryCLI runs `convoy metrics query` as a user would, against a hub process:
// the table shows the hub's API server scraped by the store, and an invalid query fails with
// the store's own message.
func TestMetricsQueryCLI(t *testing.T) {
	t.Parallel()
	f := startFleetHub(t)
	eventually(t, "the hub's API server in the metrics store", 90*time.Second, func() (bool, error) {
		cmd := exec.Command(convoyBin, "metrics", "query", `up{job="hub-apiserver"}`)
		cmd.Env = append(os.Environ(), f.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return len(lines) == 2 && strings.HasPrefix(lines[0], "NAME") && strings.Contains(lines[1], "hub-apiserver"),
			fmt.Errorf("the table:\n%s", out)
	})
	out := f.convoyFails(t, "metrics", "query", "sum(rate(")
	if !strings.Contains(out, "the metrics store refused the query") {
		t.Errorf("an invalid query:\n%s", out)
	}
	out = f.convoyFails(t, "metrics", "query", " ")
	if !strings.Contains(out, "the query is empty") {
		t.Errorf("an empty query:\n%s", out)
	}
}
