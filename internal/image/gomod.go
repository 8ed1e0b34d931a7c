package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// LabelGo is the label of an image made by FromGo that holds the SHA-256 of what it was made
// from (the Go spec, with module, version and package, and the Go toolchain), so that whoever
// pushes it can tell whether the registry has it already without building anything.
// LabelGoModule says the same for people: MODULE@VERSION PACKAGE.
const (
	LabelGo       = "dev.convoy.go.sha256"
	LabelGoModule = "dev.convoy.go.module"
)

// Go says how FromGo makes an image of a Go module's main package. It is the API's GoImage,
// as a package's metadata gives it.
type Go = v1alpha1.GoImage

// GoPlan is what ResolveGo settled: what to build and the sum of it.
type GoPlan struct {
	// Package is the main package's import path; Name the executable go install makes of it.
	Package, Name string
	// Toolchain is the Go that builds it (go env GOVERSION).
	Toolchain string
	// Sum is the SHA-256 of the spec and the toolchain; LabelGo holds it.
	Sum string
}

// goBuildFlags are the flags of every build: no paths of this machine in the executable, and
// no symbol table or DWARF (the image is for running, not debugging).
var goBuildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// ResolveGo settles what g builds and its sum, without building it: PushImages compares the
// sum with the registry's image before it spends minutes on a build.
func ResolveGo(ctx context.Context, g Go) (GoPlan, error) {
	if g.Module == "" || g.Version == "" {
		return GoPlan{}, errors.New("no Go module and version to make an image of")
	}
	if _, err := exec.LookPath("go"); err != nil {
		return GoPlan{}, errors.New("images of Go modules need the go command on PATH (https://go.dev/dl/)")
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return GoPlan{}, fmt.Errorf("go env GOVERSION: %w%s", err, stderrOf(err))
	}
	p := GoPlan{Package: g.Package, Toolchain: strings.TrimSpace(string(out))}
	if p.Package == "" {
		p.Package = g.Module
	}
	p.Name = execName(p.Package)
	h := sha256.New()
	fmt.Fprintf(h, "%#v\n%s\n%q\n", g, p.Toolchain, goBuildFlags)
	p.Sum = hex.EncodeToString(h.Sum(nil))
	return p, nil
}

// majorRE is a major version element of an import path (v2, v3, ..., v10, ...).
var majorRE = regexp.MustCompile(`^v([2-9]|[1-9][0-9]+)$`)

// execName is the name go install gives the executable of pkg: its last element, or the one
// before when that is a major version (example.com/tool/v2 makes tool).
func execName(pkg string) string {
	name := path.Base(pkg)
	if majorRE.MatchString(name) && path.Dir(pkg) != "." {
		name = path.Base(path.Dir(pkg))
	}
	return name
}

// BuildGo builds plan's executable for linux/amd64 with go install PACKAGE@VERSION
// (CGO_ENABLED=0, -trimpath; or go build in a copy of the module's source with g.Files added),
// from the module proxy and with the GOPROXY, GOFLAGS and
// GOTOOLCHAIN of the environment, into cache/SUM/NAME, and returns its path. An executable
// built before for the same sum is used as it is.
func BuildGo(ctx context.Context, g Go, plan GoPlan, cache string, progress io.Writer) (string, error) {
	dir := filepath.Join(cache, plan.Sum[:16])
	bin := filepath.Join(dir, plan.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	target := plan.Package + "@" + g.Version
	env := append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GO111MODULE=on")
	run := func(dir string, args ...string) error {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			hint := ""
			if bytes.Contains(out, []byte("cannot install cross-compiled binaries")) {
				hint = " (images of Go modules are built on linux/amd64, as the fleet's nodes run)"
			}
			return fmt.Errorf("go %s: %w: %s%s", strings.Join(args, " "), err, lastLines(out, 5), hint)
		}
		return nil
	}
	if len(g.Files) > 0 {
		fmt.Fprintf(progress, "    building %s with %d files added (go build, %s)\n", target, len(g.Files), plan.Toolchain)
		src, err := moduleSource(ctx, g, env, filepath.Join(tmp, "src"))
		if err != nil {
			return "", err
		}
		rel := "./" + strings.TrimPrefix(strings.TrimPrefix(plan.Package, g.Module), "/")
		if err := run(src, append(append([]string{"build"}, goBuildFlags...), "-o", filepath.Join(tmp, plan.Name), rel)...); err != nil {
			return "", err
		}
		if err := os.RemoveAll(src); err != nil {
			return "", err
		}
	} else {
		fmt.Fprintf(progress, "    building %s (go install, %s)\n", target, plan.Toolchain)
		// Outside any module: go install PKG@VERSION reads the module's own go.mod alone.
		if err := run(tmp, append(append([]string{"install"}, goBuildFlags...), target)...); err != nil {
			return "", err
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, plan.Name)); err != nil {
		return "", fmt.Errorf("go install %s made no executable %s: is %s a main package?", target, plan.Name, plan.Package)
	}
	// Another push of the same module may have finished first: its executable is as good.
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.RemoveAll(dir); err != nil { // what a build killed half-way left
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(bin); serr == nil {
			return bin, nil
		}
		return "", err
	}
	return bin, nil
}

// moduleSource copies the source of g's module, as the module proxy serves it (go mod
// download), to dir, with g.Files added, and returns dir.
func moduleSource(ctx context.Context, g Go, env []string, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", g.Module+"@"+g.Version)
	// Outside any module, as go install runs: the caller's go.mod (its toolchain line) must
	// not apply.
	cmd.Dir, cmd.Env = filepath.Dir(dir), env
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w%s", g.Module, g.Version, err, stderrOf(err))
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v%s", g.Module, g.Version, err, m.Error)
	}
	// The module cache is read-only: the copy is the caller's, writable (os.CopyFS makes
	// files 0666 less the umask; a module holds no symbolic links).
	if err := os.CopyFS(dir, os.DirFS(m.Dir)); err != nil {
		return "", fmt.Errorf("copy of %s@%s: %w", g.Module, g.Version, err)
	}
	for name, content := range g.Files {
		rel := filepath.Clean(filepath.FromSlash(name))
		if !filepath.IsLocal(rel) {
			return "", fmt.Errorf("file %q leaves the module: name a path inside it", name)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// FromGo makes the image of the executable binary (BuildGo's) as g says: one layer with it at
// /usr/local/bin/NAME, the host's CA certificates (when it has them), /etc/passwd and
// /etc/group with g.Users, g.Dirs and /tmp. Its content depends on the executable, g, plan
// and this machine's CA bundle alone, so making it twice here gives the same image. (The
// bundle is not in the sum: a new one reaches the image with the module's next version.)
func FromGo(g Go, plan GoPlan, binary string) (v1.Image, error) {
	root, err := os.MkdirTemp("", "convoy-rootfs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	exe := filepath.Join(root, "usr", "local", "bin", plan.Name)
	if err := copyFile(binary, exe, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(hostCACertificates); err == nil {
		if err := copyFile(hostCACertificates, filepath.Join(root, hostCACertificates), 0o644); err != nil {
			return nil, err
		}
	}
	raw, err := tarDir(root, g.ImageRuntime)
	if err != nil {
		return nil, err
	}
	c := v1.Config{Entrypoint: g.Entrypoint, Cmd: g.Cmd, User: g.User,
		Env:    append([]string{"SSL_CERT_FILE=" + hostCACertificates}, g.Env...),
		Labels: map[string]string{LabelGo: plan.Sum, LabelGoModule: g.Module + "@" + g.Version + " " + plan.Package}}
	if len(g.Entrypoint) == 0 {
		c.Entrypoint = []string{"/usr/local/bin/" + plan.Name}
	}
	if !slices.ContainsFunc(g.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		c.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, c.Env...)
	}
	return oneLayer(raw, c)
}

// copyFile copies src to dst, making dst's directories, with mode and a fixed time.
func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode) // whatever the umask
}
