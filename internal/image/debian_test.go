package image

import (
	"archive/tar"
	"cmp"
	"context"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

func TestParseDependsClosure(t *testing.T) {
	out := []byte(`redis-server
  PreDepends: init-system-helpers
  Depends: lsb-base
    sysvinit-utils
  Depends: redis-tools
init-system-helpers
 |Depends: usrmerge
  Depends: usr-is-merged
lsb-base
  Depends: sysvinit-utils
sysvinit-utils
  Depends: libc6
redis-tools
  Depends: adduser
  Depends: libc6
  Depends: <libsystemd0:any>
    libelogind0
    libsystemd0
usrmerge
  Depends: <perl:any>
    perl
usr-is-merged
libc6
adduser
  Depends: passwd
passwd
libelogind0
libsystemd0
perl
<perl:any>
`)
	g := parseDepends(out)
	for _, tc := range []struct {
		exclude []string
		want    []string
	}{
		{nil, []string{"adduser", "init-system-helpers", "libc6", "libelogind0", "lsb-base", "passwd", "perl", "redis-server", "redis-tools", "sysvinit-utils", "usrmerge"}},
		// Excluding one alternative takes the next; excluding a package drops what only it needs.
		{[]string{"usrmerge", "adduser", "libelogind0", "lsb-base"}, []string{"init-system-helpers", "libc6", "libsystemd0", "redis-server", "redis-tools", "usr-is-merged"}},
	} {
		got, err := closure(g, []string{"redis-server"}, tc.exclude)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("exclude %v:\n got %v\nwant %v", tc.exclude, got, tc.want)
		}
	}
	if _, err := closure(g, []string{"redis"}, nil); err == nil {
		t.Error("an unknown package was accepted")
	}
}

// TestFromDebian makes a small image of a real Debian package and its dependencies, with the
// machine's apt (as `convoy package push` does), and reads it back.
func TestFromDebian(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("not a Debian machine")
	}
	t.Parallel()
	ctx := context.Background()
	cache := t.TempDir()
	d := Debian{Packages: []string{"liblzf1"}, Exclude: []string{"libgcc-s1"}, ImageRuntime: v1alpha1.ImageRuntime{
		Users: []string{"app:x:999:999:app:/data:/usr/sbin/nologin"}, Dirs: []string{"/data"}, Owner: "999:999", Entrypoint: []string{"/bin/true"}, User: "999"}}
	plan, err := ResolveDebian(ctx, d, cache, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.Packages, "libc6") || slices.Contains(plan.Packages, "libgcc-s1") || slices.Contains(plan.Packages, "gcc-12-base") {
		t.Errorf("packages %v: want libc6, and neither the excluded libgcc-s1 nor what only it needs", plan.Packages)
	}
	again, err := ResolveDebian(ctx, d, cache, io.Discard)
	if err != nil || again.Sum != plan.Sum {
		t.Errorf("resolved again: %v, sum %s then %s", err, plan.Sum, again.Sum)
	}
	img, err := FromDebian(ctx, d, plan, cache)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "999" || cf.Config.Labels[LabelDebian] != plan.Sum || !slices.Equal(cf.Config.Entrypoint, []string{"/bin/true"}) {
		t.Errorf("config %+v", cf.Config)
	}
	files, passwd := filesOf(img)
	if _, ok := files["usr/lib/x86_64-linux-gnu/liblzf.so.1"]; !ok {
		t.Error("the image lacks liblzf.so.1")
	}
	if h := cmp.Or(files["data/"], files["data"]); h == nil || h.Uid != 999 || h.Gid != 999 {
		t.Errorf("data/ is %+v, want it owned by 999:999", h)
	}
	if files["usr/share/doc/"] != nil || files["usr/share/doc"] != nil {
		t.Error("the image has the documentation")
	}
	if !strings.Contains(passwd, "\napp:x:999:999:") {
		t.Errorf("/etc/passwd:\n%s", passwd)
	}
}

// filesOf reads an image's files: their headers by name, and /etc/passwd.
func filesOf(img v1.Image) (map[string]*tar.Header, string) {
	files := map[string]*tar.Header{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var passwd string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		files[h.Name] = h
		if h.Name == "etc/passwd" {
			b, _ := io.ReadAll(tr)
			passwd = string(b)
		}
	}
	return files, passwd
}
