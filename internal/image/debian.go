package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// LabelDebian is the label of an image made by FromDebian that holds the SHA-256 of what it
// was made from (the .deb files and the Debian spec), so that whoever pushes it can tell
// whether the registry has it already.
const LabelDebian = "dev.convoy.debian.sha256"

// Debian says how FromDebian makes an image of Debian packages, without Docker and without
// running any maintainer script: the packages and their dependencies are unpacked
// (dpkg-deb -x) into one layer, as distroless images are made. It is the API's DebianImage,
// as a package's metadata gives it.
type Debian = v1alpha1.DebianImage

// DebianPlan is what FromDebian resolved: the packages to unpack and their files.
type DebianPlan struct {
	Packages []string
	// Files are the .deb files in the cache, in Packages' order.
	Files []string
	// Sum is the SHA-256 of the files' names and the spec; LabelDebian holds it.
	Sum string
}

// ResolveDebian finds the packages d needs (apt-cache's dependency graph, with Exclude and
// whatever only they pull in left out) and downloads the missing ones into cache with
// apt-get download. The machine's apt lists must be current (apt-get update).
func ResolveDebian(ctx context.Context, d Debian, cache string, progress io.Writer) (DebianPlan, error) {
	if len(d.Packages) == 0 {
		return DebianPlan{}, fmt.Errorf("no Debian packages to make an image of")
	}
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
		"--no-breaks", "--no-replaces", "--no-enhances"}, d.Packages...)
	out, err := exec.CommandContext(ctx, "apt-cache", args...).Output()
	if err != nil {
		return DebianPlan{}, fmt.Errorf("apt-cache depends %s: %w%s (is this a Debian machine with current apt lists? run apt-get update)",
			strings.Join(d.Packages, " "), err, stderrOf(err))
	}
	pkgs, err := closure(parseDepends(out), d.Packages, d.Exclude)
	if err != nil {
		return DebianPlan{}, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return DebianPlan{}, err
	}
	// --print-uris names each package's file without downloading it.
	uris, err := exec.CommandContext(ctx, "apt-get", append([]string{"download", "--print-uris"}, pkgs...)...).Output()
	if err != nil {
		return DebianPlan{}, fmt.Errorf("apt-get download --print-uris: %w%s", err, stderrOf(err))
	}
	var files, missing []string
	for line := range strings.Lines(string(uris)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		files = append(files, f[1])
		if _, err := os.Stat(filepath.Join(cache, f[1])); err != nil {
			missing = append(missing, strings.SplitN(f[1], "_", 2)[0])
		}
	}
	if len(files) != len(pkgs) {
		return DebianPlan{}, fmt.Errorf("apt-get names %d files for %d packages (%s)", len(files), len(pkgs), strings.Join(pkgs, " "))
	}
	if len(missing) > 0 {
		fmt.Fprintf(progress, "    downloading %d Debian packages\n", len(missing))
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, missing...)...)
		cmd.Dir = cache
		if out, err := cmd.CombinedOutput(); err != nil {
			return DebianPlan{}, fmt.Errorf("apt-get download: %w: %s", err, lastLines(out, 5))
		}
	}
	h := sha256.New()
	fmt.Fprintln(h, debianLayout)
	for _, f := range files {
		fmt.Fprintln(h, f)
	}
	fmt.Fprintf(h, "%q\n", d)
	return DebianPlan{Packages: pkgs, Files: files, Sum: hex.EncodeToString(h.Sum(nil))}, nil
}

// debianLayout names how FromDebian lays out an image; a change to it (what it leaves out,
// what it adds) changes every plan's sum, so that images made the old way are made again.
const debianLayout = "layout 2: without doc, man, info, lintian, locale"

// FromDebian makes the image of plan (ResolveDebian's) as d says: one layer of the unpacked
// packages, with /etc/passwd, /etc/group, d.Dirs and /tmp.
func FromDebian(ctx context.Context, d Debian, plan DebianPlan, cache string) (v1.Image, error) {
	root, err := os.MkdirTemp("", "convoy-rootfs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)
	for _, f := range plan.Files {
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", filepath.Join(cache, f), root).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", f, err, lastLines(out, 3))
		}
	}
	// Documentation, manuals and translations are not needed to run anything (services run
	// in the C locale).
	for _, p := range []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale"} {
		_ = os.RemoveAll(filepath.Join(root, p))
	}
	raw, err := tarDir(root, d.ImageRuntime)
	if err != nil {
		return nil, err
	}
	c := v1.Config{Entrypoint: d.Entrypoint, Cmd: d.Cmd, User: d.User, Env: d.Env,
		Labels: map[string]string{LabelDebian: plan.Sum, "dev.convoy.debian.packages": strings.Join(d.Packages, " ")}}
	if !slices.ContainsFunc(d.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		c.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, d.Env...)
	}
	return oneLayer(raw, c)
}

// oneLayer makes a linux/amd64 image of one layer, the tar raw, with config c. The layer is
// compressed once, here: opened uncompressed it would be compressed twice, for its digest and
// again for the upload (a minute more for PyTorch's 650 MiB).
func oneLayer(raw []byte, c v1.Config) (v1.Image, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(compressed)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = c
	return mutate.ConfigFile(img, cf)
}

// tarDir writes root as a tar with fixed times and root ownership, adding the users, Dirs and
// /tmp of d.
func tarDir(root string, d v1alpha1.ImageRuntime) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "etc/passwd" || rel == "etc/group" {
			return nil // written below
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = rel, epoch, 0, 0, "", ""
		h.AccessTime, h.ChangeTime, h.Format = time.Time{}, time.Time{}, tar.FormatPAX
		if e.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer of the unpacked packages: %w", err)
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	group := "root:x:0:\nnobody:x:65534:\n"
	for _, u := range d.Users {
		f := strings.Split(u, ":")
		if len(f) != 7 {
			return nil, fmt.Errorf("user %q: write it as NAME:x:UID:GID:GECOS:HOME:SHELL", u)
		}
		passwd += u + "\n"
		group += f[0] + ":x:" + f[3] + ":\n"
	}
	uid, gid := 0, 0
	if d.Owner != "" {
		if _, err := fmt.Sscanf(d.Owner, "%d:%d", &uid, &gid); err != nil {
			return nil, fmt.Errorf("owner %q: write it as UID:GID", d.Owner)
		}
	}
	hdrs := []*tar.Header{
		{Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd)), Typeflag: tar.TypeReg},
		{Name: "etc/group", Mode: 0o644, Size: int64(len(group)), Typeflag: tar.TypeReg},
		{Name: "tmp/", Mode: 0o1777, Typeflag: tar.TypeDir},
	}
	for _, dir := range d.Dirs {
		hdrs = append(hdrs, &tar.Header{Name: strings.Trim(dir, "/") + "/", Mode: 0o775, Typeflag: tar.TypeDir, Uid: uid, Gid: gid})
	}
	bodies := map[string]string{"etc/passwd": passwd, "etc/group": group}
	for _, h := range hdrs {
		h.ModTime = epoch
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, bodies[h.Name]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// depGraph is apt-cache depends --recurse's answer: each package's dependencies, each a list
// of alternatives (a virtual package's alternatives are its providers).
type depGraph map[string][][]string

// parseDepends reads apt-cache depends output:
//
//	redis-tools
//	  Depends: libc6
//	 |Depends: usrmerge         (an alternative to the next line)
//	  Depends: usr-is-merged
//	  Depends: <perl:any>       (virtual: the indented lines below provide it)
//	    perl
func parseDepends(out []byte) depGraph {
	g := depGraph{}
	var cur string
	var group []string // alternatives gathered so far
	var virtual bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !strings.HasPrefix(line, " "):
			cur = strings.TrimSpace(line)
			if _, ok := g[cur]; !ok && !strings.HasPrefix(cur, "<") {
				g[cur] = nil
			}
			group = nil
		case strings.HasPrefix(line, "    "):
			// a provider of the dependency above, when that was virtual
			if virtual && len(g[cur]) > 0 {
				last := g[cur][len(g[cur])-1]
				g[cur][len(g[cur])-1] = append(last, strings.TrimSpace(line))
			}
		default:
			t := strings.TrimSpace(line)
			alt := strings.HasPrefix(t, "|")
			t = strings.TrimPrefix(t, "|")
			kind, dep, ok := strings.Cut(t, ": ")
			if !ok || (kind != "Depends" && kind != "PreDepends") || strings.HasPrefix(cur, "<") {
				continue
			}
			dep = strings.SplitN(dep, ":", 2)[0] // perl:any -> perl
			virtual = strings.HasPrefix(dep, "<")
			if !virtual {
				group = append(group, dep)
			}
			if alt {
				if virtual {
					virtual = false // providers of alternatives are not followed
				}
				continue
			}
			g[cur] = append(g[cur], group)
			group = nil
		}
	}
	return g
}

// closure is every package roots need in g, leaving out exclude and what only those need.
// Of alternatives, the first one not excluded is taken.
func closure(g depGraph, roots, exclude []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var visit func(p string) error
	visit = func(p string) error {
		if seen[p] || slices.Contains(exclude, p) {
			return nil
		}
		deps, ok := g[p]
		if !ok {
			return fmt.Errorf("debian package %q is unknown to apt (check its name with apt-cache policy %s)", p, p)
		}
		seen[p] = true
		out = append(out, p)
		for _, alts := range deps {
			for _, a := range alts {
				a = strings.Trim(a, "<>")
				if slices.Contains(exclude, a) {
					continue
				}
				if _, known := g[a]; !known {
					continue
				}
				if err := visit(a); err != nil {
					return err
				}
				break
			}
		}
		return nil
	}
	for _, r := range roots {
		if _, ok := g[r]; !ok {
			return nil, fmt.Errorf("debian package %q is unknown to apt (check its name with apt-cache policy %s)", r, r)
		}
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	slices.Sort(out)
	return out, nil
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
		return ": " + lastLines(ee.Stderr, 3)
	}
	return ""
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
