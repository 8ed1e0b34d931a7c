package node

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// cgroupMount is where the cgroup hierarchies are mounted (cgroup v1, one per controller; a
// cgroup v2 host has one, "unified" or the mount itself).
const cgroupMount = "/sys/fs/cgroup"

// hierarchies lists the mounted cgroup hierarchies' directories.
func hierarchies() []string {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		sep := slices.Index(f, "-")
		if sep < 0 || sep+1 >= len(f) {
			continue
		}
		if t := f[sep+1]; (t == "cgroup" || t == "cgroup2") && strings.HasPrefix(f[4], cgroupMount) {
			out = append(out, unescape(f[4]))
		}
	}
	return out
}

// makeCgroupRoot creates a cgroup in every hierarchy, as the kubelet needs on cgroup v1, and
// gives cpuset ones the parent's CPUs and memory nodes (a new cpuset has none).
func makeCgroupRoot(root string) error {
	var errs []error
	for _, h := range hierarchies() {
		dir := h
		for _, part := range strings.Split(strings.Trim(root, "/"), "/") {
			parent := dir
			dir = filepath.Join(dir, part)
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				errs = append(errs, err)
				break
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
					if cur, _ := os.ReadFile(filepath.Join(dir, f)); strings.TrimSpace(string(cur)) == "" {
						_ = os.WriteFile(filepath.Join(dir, f), v, 0o644)
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// pidsInCgroups lists the processes in a cgroup and below it, in every hierarchy.
func pidsInCgroups(root string) []int {
	seen := map[int]bool{}
	for _, h := range hierarchies() {
		_ = filepath.WalkDir(filepath.Join(h, root), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			raw, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			for f := range strings.FieldsSeq(string(raw)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	out := make([]int, 0, len(seen))
	for pid := range seen {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

// removeCgroups removes a cgroup and everything below it, in every hierarchy, and its parents
// up to /convoy while they are empty.
func removeCgroups(root string) error {
	var errs []error
	for _, h := range hierarchies() {
		base := filepath.Join(h, root)
		var dirs []string
		_ = filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
		for parent := filepath.Dir(base); strings.HasPrefix(parent, filepath.Join(h, "convoy")); parent = filepath.Dir(parent) {
			if syscall.Rmdir(parent) != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

type netDialer struct{}

func (netDialer) dial(path string) (net.Conn, error) { return net.Dial("unix", path) }
