package kubeproc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRaiseLimits(t *testing.T) {
	dir := t.TempDir()
	write := func(name, v string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(name string) string {
		raw, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(raw))
	}
	write("fs/inotify/max_user_instances", "128\n")
	write("fs/inotify/max_user_watches", "1048576\n")
	want := map[string]int{"fs/inotify/max_user_instances": 8192, "fs/inotify/max_user_watches": 524288}

	raised, err := raiseLimits(dir, want)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(raised, []string{"fs.inotify.max_user_instances 128 -> 8192"}) {
		t.Errorf("raised %q", raised)
	}
	// A limit already higher is left as it is.
	if got := read("fs/inotify/max_user_instances"); got != "8192" {
		t.Errorf("max_user_instances is %s", got)
	}
	if got := read("fs/inotify/max_user_watches"); got != "1048576" {
		t.Errorf("max_user_watches is %s, want it left at 1048576", got)
	}
	if raised, err := raiseLimits(dir, want); err != nil || len(raised) != 0 {
		t.Errorf("second raise: %q, %v", raised, err)
	}

	// One that cannot be read is an error that names it.
	_, err = raiseLimits(dir, map[string]int{"fs/inotify/missing": 1})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing limit: %v", err)
	}
	// One that cannot be written says the command that raises it: ngroups_max is read-only
	// even for root.
	if err := os.Symlink("/proc/sys/kernel/ngroups_max", filepath.Join(dir, "fs/inotify/read-only")); err != nil {
		t.Fatal(err)
	}
	_, err = raiseLimits(dir, map[string]int{"fs/inotify/read-only": 1 << 30})
	if err == nil || !strings.Contains(err.Error(), "sysctl -w fs.inotify.read-only=1073741824") {
		t.Errorf("a limit that cannot be written: %v", err)
	}
}
