package image

import (
	"cmp"
	"context"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestExecName(t *testing.T) {
	for pkg, want := range map[string]string{
		"github.com/FerretDB/FerretDB/cmd/ferretdb": "ferretdb",
		"golang.org/x/example/hello":                "hello",
		"example.com/tool/v2":                       "tool",
		"example.com/tool/v10":                      "tool",
		"example.com/tool/v03":                      "v03",
		"example.com/v1":                            "v1",
	} {
		if got := execName(pkg); got != want {
			t.Errorf("execName(%s) = %s, want %s", pkg, got, want)
		}
	}
}

// TestFromGo builds a tiny real main package from the module proxy (as `convoy package push`
// does), makes its image, reads it back and runs the executable it holds.
func TestFromGo(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	if testing.Short() {
		t.Skip("builds a module from the module proxy")
	}
	t.Parallel()
	ctx := context.Background()
	cache := t.TempDir()
	g := Go{Module: "golang.org/x/example/hello", Version: "v0.0.0-20250915201037-7f05d217867b", ImageRuntime: v1alpha1.ImageRuntime{
		Users: []string{"app:x:999:999:app:/data:/usr/sbin/nologin"}, Dirs: []string{"/data"}, Owner: "999:999", User: "999",
		Cmd: []string{"-g", "Hi"}}}
	plan, err := ResolveGo(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Name != "hello" || plan.Package != g.Module {
		t.Errorf("plan %+v: want the executable hello of the module's root package", plan)
	}
	bin, err := BuildGo(ctx, g, plan, cache, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// Built for linux/amd64 without cgo, so it runs here (the tests run on linux/amd64).
	if out, err := exec.Command(bin, "-g", "Hi").CombinedOutput(); err != nil || !strings.Contains(string(out), "Hi") {
		t.Errorf("%s -g Hi: %v: %s", bin, err, out)
	}
	// Built once: a second build of the same plan is the cached executable.
	st, _ := os.Stat(bin)
	again, err := BuildGo(ctx, g, plan, cache, io.Discard)
	if st2, _ := os.Stat(again); err != nil || again != bin || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("built again: %v, %s then %s", err, bin, again)
	}
	if entries, _ := os.ReadDir(cache); len(entries) != 1 {
		t.Errorf("the cache holds %d entries, want the one build", len(entries))
	}
	other := g
	other.Env = []string{"DEBUG=1"}
	if p2, err := ResolveGo(ctx, other); err != nil || p2.Sum == plan.Sum {
		t.Errorf("a changed spec has the same sum (%v)", err)
	}
	// With files added, the module's source is copied and built with go build.
	withFiles := g
	withFiles.Files = map[string]string{"convoy/NOTICE": "built by convoy\n"}
	plan2, err := ResolveGo(ctx, withFiles)
	if err != nil {
		t.Fatal(err)
	}
	if bin2, err := BuildGo(ctx, withFiles, plan2, cache, io.Discard); err != nil || bin2 == bin {
		t.Errorf("built with files: %v, %s", err, bin2)
	} else if out, err := exec.Command(bin2, "-r").CombinedOutput(); err != nil || !strings.Contains(string(out), "olleH") {
		t.Errorf("%s -r: %v: %s", bin2, err, out)
	}
	img, err := FromGo(g, plan, bin)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "999" || cf.Config.Labels[LabelGo] != plan.Sum || !strings.HasPrefix(cf.Config.Labels[LabelGoModule], g.Module+"@"+g.Version) ||
		!slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/hello"}) || !slices.Equal(cf.Config.Cmd, g.Cmd) ||
		!slices.Contains(cf.Config.Env, "PATH=/usr/local/bin:/usr/bin:/bin") {
		t.Errorf("config %+v", cf.Config)
	}
	files, passwd := filesOf(img)
	if h := files["usr/local/bin/hello"]; h == nil || h.Mode&0o111 == 0 || h.Uid != 0 {
		t.Errorf("usr/local/bin/hello is %+v, want an executable of root's", h)
	}
	if _, err := os.Stat(hostCACertificates); err == nil && files[strings.TrimPrefix(hostCACertificates, "/")] == nil {
		t.Error("the image lacks the CA certificates")
	}
	if h := cmp.Or(files["data/"], files["data"]); h == nil || h.Uid != 999 || h.Gid != 999 {
		t.Errorf("data/ is %+v, want it owned by 999:999", h)
	}
	if h := cmp.Or(files["tmp/"], files["tmp"]); h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("tmp/ is %+v", h)
	}
	if !strings.Contains(passwd, "\napp:x:999:999:") {
		t.Errorf("/etc/passwd:\n%s", passwd)
	}
	// The same executable and spec make the same image.
	img2, err := FromGo(g, plan, bin)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := img2.Digest()
	if d1 != d2 {
		t.Errorf("made twice: %s then %s", d1, d2)
	}
}
