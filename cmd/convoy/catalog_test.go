package main_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/convoy-dev/convoy/internal/hubtest"
)

// checkCatalog is issue 18 end to end on `convoy up`'s fleet, as the README runs it: the Redis
// package is pushed (its image made from Debian's redis-server) and installed to two regions
// with one command; the demo app is bound to it and counts visits in it where both run, and
// not where the service is not; the count survives the Redis pod being killed; an upgrade goes
// in waves and keeps the password; uninstall is refused while the binding uses the service,
// and --force --delete-data removes it, its volumes and the projection. Then PostgreSQL with a
// replica, bound, killed, backed up and restored; a new package from `convoy package init`
// through lint, test and push to an install from the catalog; and NATS and RabbitMQ installed
// side by side.
func checkCatalog(t *testing.T, env []string, kubectl, dataDir string, kubeconfigs map[string]string) {
	t.Helper()
	root := hubtest.RepoRoot(t)
	hubKubeconfig := filepath.Join(dataDir, "kubeconfig")
	convoy := func(args ...string) (string, error) {
		cmd := exec.Command(convoyBin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out := run(t, env, convoyBin, "package", "push", filepath.Join(root, "catalog", "redis"))
	if !strings.Contains(out, "redis 7.0.15 is in the catalog") {
		t.Fatalf("convoy package push:\n%s", out)
	}
	if out := run(t, env, convoyBin, "catalog", "list"); !regexp.MustCompile(`redis\s+7\.0\.15\s+7\.0\.15\s+cache\s+standard,cache`).MatchString(out) {
		t.Errorf("convoy catalog list:\n%s", out)
	}

	// Bad input is refused before anything is installed.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--placement", "regions=mars"}, "matches no Ready cluster"},
		{[]string{"--set", "plan=huge"}, `has no plan "huge"; its plans are standard, cache`},
		{[]string{"--set", "persistence.size=lots"}, "values don't meet the specifications of the schema"},
		{[]string{"--version", "9.9.9"}, "has no version 9.9.9"},
	} {
		out, err := convoy(append([]string{"catalog", "install", "redis", "--name", "nope", "-n", "demo"}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("catalog install %v: %v, want an error with %q:\n%s", tc.args, err, tc.want, out)
		}
	}
	if out, err := exec.Command(kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "get", "placement,secret", "-l", "app.kubernetes.io/instance=nope", "-o", "name").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("refused installs left something at the hub: %v %s", err, out)
	}
	if _, err := convoy("catalog", "install", "redisx", "-n", "demo"); err == nil {
		t.Error("an unknown package was installed")
	}

	start := time.Now()
	out = run(t, env, convoyBin, "catalog", "install", "redis", "--name", "cache", "-n", "demo", "--placement", "regions=us-east,eu-west")
	if !strings.Contains(out, "is Available as demo/cache on 2 clusters") || !strings.Contains(out, "eu-west    Available") {
		t.Fatalf("convoy catalog install:\n%s", out)
	}
	t.Logf("redis installed on 2 clusters in %s", time.Since(start).Round(time.Second))
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "apply", "-f", filepath.Join(root, "examples/web/binding.yaml"))
	eventually(t, "the binding Ready in eu-west and us-east", time.Minute, func() (bool, error) {
		out, err := exec.Command(kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "get", "servicebinding", "cache", "-o",
			`jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.clusters}`).CombinedOutput()
		return err == nil && string(out) == `True ["eu-west","us-east"]`, fmt.Errorf("%s", out)
	})

	nodeIP := func(c string) string {
		return run(t, nil, kubectl, "--kubeconfig", kubeconfigs[c], "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	}
	visits := regexp.MustCompile(`^visits: (\d+) \(redis at cache-redis\.demo\.svc\.cluster\.local:6379, binding cache; cluster (\S+),`)
	get := func(c string) (int, string) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + nodeIP(c) + ":30080/visits")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	count := func(c string, above int) int {
		n := 0
		eventually(t, c+" counting visits above "+strconv.Itoa(above), 2*time.Minute, func() (bool, error) {
			code, body := get(c)
			m := visits.FindStringSubmatch(body)
			if code != http.StatusOK || m == nil || m[2] != c {
				return false, fmt.Errorf("%d %q", code, body)
			}
			n, _ = strconv.Atoi(m[1])
			return n > above, fmt.Errorf("%d %q", code, body)
		})
		return n
	}
	first := count("us-east", 0)
	count("eu-west", 0)
	if code, body := get("us-west"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no service is bound") {
		t.Errorf("us-west, where the service is not placed, answered %d %q", code, body)
	}

	// The Redis pod is killed: the count survives (on its volume).
	redis := []string{"--kubeconfig", kubeconfigs["us-east"], "-n", "demo"}
	password := run(t, nil, kubectl, append(redis, "get", "secret", "cache-binding", "-o", "jsonpath={.data.password}")...)
	run(t, nil, kubectl, append(redis, "delete", "pod", "cache-redis-0", "--wait")...)
	second := count("us-east", first)
	t.Logf("us-east counted %d visits before the Redis pod was killed and %d after", first, second)

	// An upgrade rolls out one cluster per wave and keeps the password.
	out = run(t, env, convoyBin, "catalog", "upgrade", "cache", "-n", "demo", "--set", "maxMemory=128mb")
	if !strings.Contains(out, "wave eu-west") || !strings.Contains(out, "runs redis 7.0.15 (plan standard) everywhere") {
		t.Errorf("convoy catalog upgrade:\n%s", out)
	}
	if args := run(t, nil, kubectl, append(redis, "get", "statefulset", "cache-redis", "-o", "jsonpath={.spec.template.spec.containers[0].args}")...); !strings.Contains(args, `"128mb"`) {
		t.Errorf("the upgrade did not reach us-east: %s", args)
	}
	if again := run(t, nil, kubectl, append(redis, "get", "secret", "cache-binding", "-o", "jsonpath={.data.password}")...); again != password {
		t.Error("the upgrade changed the password")
	}
	count("us-east", second)

	// Uninstall: refused while bound; forced, it takes the volumes and the projection with it.
	if out, err := convoy("catalog", "uninstall", "cache", "-n", "demo"); err == nil || !strings.Contains(out, "is bound to workloads by ServiceBinding cache") {
		t.Errorf("uninstall of a bound service: %v\n%s", err, out)
	}
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "get", "placement", "cache") // still there
	out = run(t, env, convoyBin, "catalog", "uninstall", "cache", "-n", "demo", "--force", "--delete-data")
	if !strings.Contains(out, "us-east    1 volumes deleted") || !strings.Contains(out, "demo/cache is uninstalled, with its volumes") {
		t.Errorf("convoy catalog uninstall --force --delete-data:\n%s", out)
	}
	eventually(t, "the binding saying its service is gone", time.Minute, func() (bool, error) {
		out, err := exec.Command(kubectl, "--kubeconfig", hubKubeconfig, "-n", "demo", "get", "servicebinding", "cache", "-o",
			`jsonpath={.status.conditions[?(@.type=="Ready")].reason}`).CombinedOutput()
		return err == nil && string(out) == "ServiceNotFound", fmt.Errorf("%s", out)
	})
	eventually(t, "us-east's volumes and the projection gone", 2*time.Minute, func() (bool, error) {
		pvcs, err := exec.Command(kubectl, append(redis, "get", "pvc,statefulset", "-l", "app.kubernetes.io/instance=cache", "-o", "name")...).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(pvcs))) > 0 {
			return false, fmt.Errorf("%v %s", err, pvcs)
		}
		code, body := get("us-east")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "no service is bound"), fmt.Errorf("%d %q", code, body)
	})
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "delete", "-f", filepath.Join(root, "examples/web/binding.yaml"))

	// PostgreSQL with a streaming replica, bound to the app: the count survives the primary
	// pod being killed, and a row deleted after a backup is back after the restore.
	out = run(t, env, convoyBin, "package", "push", filepath.Join(root, "catalog", "postgres"))
	if !strings.Contains(out, "postgres 15.20.0 is in the catalog") {
		t.Fatalf("convoy package push postgres:\n%s", out)
	}
	start = time.Now()
	out = run(t, env, convoyBin, "catalog", "install", "postgres", "--name", "orders", "-n", "demo", "--placement", "regions=us-east,eu-west", "--set", "plan=ha")
	if !strings.Contains(out, "postgres 15.20.0 (plan ha) is Available as demo/orders on 2 clusters") {
		t.Fatalf("convoy catalog install postgres:\n%s", out)
	}
	t.Logf("postgres (plan ha) installed on 2 clusters in %s", time.Since(start).Round(time.Second))
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "apply", "-f", filepath.Join(root, "examples/web/binding-postgres.yaml"))
	visits = regexp.MustCompile(`^visits: (\d+) \(postgresql at orders-postgres\.demo\.svc\.cluster\.local:5432, binding orders; cluster (\S+),`)
	first = count("us-east", 0)
	first = count("us-east", first)
	count("eu-west", 0)
	psql := func(sql string) string {
		t.Helper()
		return strings.TrimSpace(run(t, nil, kubectl, append(redis, "exec", "orders-postgres-0", "--", "dash", "-c",
			`psql "postgresql://app:$APP_PASSWORD@127.0.0.1/app" -Atc "`+sql+`"`)...))
	}
	eventually(t, "us-east's replica streaming the visits", time.Minute, func() (bool, error) {
		out, err := exec.Command(kubectl, append(redis, "exec", "orders-postgres-replica-0", "--", "dash", "-c",
			`PGPASSWORD=$POSTGRES_PASSWORD psql -h 127.0.0.1 -U postgres app -Atc "SELECT count(*) >= `+strconv.Itoa(first)+`, pg_is_in_recovery() FROM visits"`)...).CombinedOutput()
		return err == nil && strings.TrimSpace(string(out)) == "t|t", fmt.Errorf("%v %s", err, out)
	})
	run(t, nil, kubectl, append(redis, "delete", "pod", "orders-postgres-0", "--wait")...)
	second = count("us-east", first)
	t.Logf("us-east counted %d visits in postgresql before the primary pod was killed and %d after", first, second)

	out = run(t, env, convoyBin, "catalog", "backup", "orders", "-n", "demo", "--cluster", "us-east")
	if !regexp.MustCompile(`backup app-\d{8}T\d{6}Z\.dump: \d+ bytes`).MatchString(out) {
		t.Fatalf("convoy catalog backup:\n%s", out)
	}
	rows := psql("SELECT count(*) FROM visits")
	psql("DELETE FROM visits WHERE ctid IN (SELECT ctid FROM visits LIMIT 1)")
	if after := psql("SELECT count(*) FROM visits"); after == rows {
		t.Fatalf("the row was not deleted: %s rows before, %s after", rows, after)
	}
	out = run(t, env, convoyBin, "catalog", "restore", "orders", "-n", "demo", "--cluster", "us-east")
	if !strings.Contains(out, "restored app-") {
		t.Errorf("convoy catalog restore:\n%s", out)
	}
	if back := psql("SELECT count(*) FROM visits"); back != rows {
		t.Errorf("after the restore the table has %s rows, want the %s of the backup", back, rows)
	}
	if out, err := convoy("catalog", "restore", "orders", "-n", "demo", "--cluster", "us-east", "--backup", "nope.dump"); err == nil || !strings.Contains(out, "no backup /backup/nope.dump") {
		t.Errorf("restore of a backup that does not exist: %v\n%s", err, out)
	}
	run(t, nil, kubectl, "--kubeconfig", hubKubeconfig, "delete", "-f", filepath.Join(root, "examples/web/binding-postgres.yaml"))
	run(t, env, convoyBin, "catalog", "uninstall", "orders", "-n", "demo", "--delete-data")

	// A packager's new package: init, lint, test (in a throwaway cluster, deleted after), push,
	// and it installs from the catalog.
	dir := t.TempDir()
	run(t, env, convoyBin, "package", "init", "kv", "--dir", dir)
	pkg := filepath.Join(dir, "kv")
	run(t, env, convoyBin, "package", "lint", pkg)
	out = run(t, env, convoyBin, "package", "test", pkg)
	if !strings.Contains(out, "kv 0.1.0 passed its tests") || !strings.Contains(out, "deleted") {
		t.Errorf("convoy package test:\n%s", out)
	}
	if clusters := run(t, env, convoyBin, "get", "clusters"); strings.Contains(clusters, "pkgtest-") {
		t.Errorf("the package test's cluster is left:\n%s", clusters)
	}
	run(t, env, convoyBin, "package", "push", pkg)
	out = run(t, env, convoyBin, "catalog", "install", "kv", "-n", "demo", "--placement", "clusters=us-west")
	if !strings.Contains(out, "kv 0.1.0 (plan standard) is Available as demo/kv on 1 cluster") {
		t.Errorf("convoy catalog install kv:\n%s", out)
	}
	run(t, env, convoyBin, "catalog", "uninstall", "kv", "-n", "demo", "--delete-data")

	// The streaming and messaging packages, Kafka's stand-ins, pushed in one command and
	// installed side by side: each is Available (its readiness probe is its own health
	// check: JetStream's, the broker's listeners) and uninstalls with its volume.
	out = run(t, env, convoyBin, "package", "push", filepath.Join(root, "catalog", "nats"), filepath.Join(root, "catalog", "rabbitmq"))
	for _, want := range []string{"nats 2.9.10 is in the catalog", "rabbitmq 3.10.8 is in the catalog"} {
		if !strings.Contains(out, want) {
			t.Fatalf("convoy package push nats rabbitmq lacks %q:\n%s", want, out)
		}
	}
	installed := make(chan string, 2)
	for _, name := range []string{"nats", "rabbitmq"} {
		go func() {
			out, err := convoy("catalog", "install", name, "--name", "stream-"+name, "-n", "demo", "--placement", "clusters=us-west")
			if err != nil {
				out = fmt.Sprintf("%v\n%s", err, out)
			}
			installed <- out
		}()
	}
	for range 2 {
		if out := <-installed; !strings.Contains(out, "is Available as demo/stream-") {
			t.Errorf("convoy catalog install:\n%s", out)
		}
	}
	for _, name := range []string{"nats", "rabbitmq"} {
		out := run(t, env, convoyBin, "catalog", "uninstall", "stream-"+name, "-n", "demo", "--delete-data")
		if !strings.Contains(out, "us-west    1 volumes deleted") {
			t.Errorf("convoy catalog uninstall stream-%s --delete-data:\n%s", name, out)
		}
	}
}
