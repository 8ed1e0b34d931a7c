package cli

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/convoy-dev/convoy/internal/hub"
	"github.com/convoy-dev/convoy/internal/image"
	"github.com/convoy-dev/convoy/internal/registry"
)

// imageOptions say which fleet registry `convoy image` talks to.
type imageOptions struct {
	registry string
	dataDir  string
}

func (o *imageOptions) addr() (string, error) {
	if o.registry != "" {
		if _, port, err := net.SplitHostPort(o.registry); err != nil || port == "" || strings.Contains(o.registry, "/") {
			return "", usageError("--registry %q: give the registry's HOST:PORT, for example 127.0.0.1:5000 (no scheme, no path)", o.registry)
		}
		return o.registry, nil
	}
	return hub.Layout{Dir: o.dataDir}.RegistryAddr()
}

func newImageCmd(g *globals) *cobra.Command {
	o := &imageOptions{}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Put images into the fleet registry, and list them",
		Long: `The fleet registry runs in the hub; every real node pulls its images from it, and from nowhere
else. Name images registry.convoy.local/REPO:TAG; docker.io, ghcr.io, quay.io, registry.k8s.io and
gcr.io names are served from it too (nginx:1.27 is its library/nginx:1.27).`,
	}
	cmd.PersistentFlags().StringVar(&o.registry, "registry", "", "the fleet registry's address (default: the one the hub of --data-dir runs)")
	cmd.PersistentFlags().StringVar(&o.dataDir, "data-dir", hub.DefaultDataDir(), "the hub's data dir ($CONVOY_DATA_DIR)")
	cmd.AddCommand(newImagePushCmd(g, o), newImageBuildCmd(g, o), newImageListCmd(g, o))
	return cmd
}

func newImagePushCmd(g *globals, o *imageOptions) *cobra.Command {
	var as string
	cmd := &cobra.Command{
		Use:   "push FILE|-",
		Short: "Push the images of a docker-archive or OCI archive (- reads it from stdin)",
		Example: `  docker save nginx:1.27 | convoy image push -
  convoy image push web.tar --name registry.convoy.local/web:1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := o.addr()
			if err != nil {
				return err
			}
			scratch, err := os.MkdirTemp("", "convoy-image-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			file := args[0]
			if file == "-" {
				file = filepath.Join(scratch, "stdin.tar")
				f, err := os.Create(file)
				if err != nil {
					return err
				}
				_, err = io.Copy(f, g.streams.In)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return fmt.Errorf("read the archive from stdin: %w", err)
				}
			}
			out := g.streams.Out
			fmt.Fprintf(out, "==> reading %s\n", args[0])
			imgs, err := image.Load(file, filepath.Join(scratch, "oci"))
			if err != nil {
				return err
			}
			if as != "" {
				if len(imgs) != 1 {
					return usageError("%s holds %d images; --name names one, so push them under their own names", args[0], len(imgs))
				}
				imgs[0].Name = as
			}
			for _, n := range imgs {
				if n.Name == "" {
					return usageError("%s gives its image no name; pass --name %s/REPO:TAG", args[0], registry.Host)
				}
				if _, err := registry.Target(addr, n.Name); err != nil {
					return err
				}
			}
			for _, n := range imgs {
				start := time.Now()
				fmt.Fprintf(out, "==> pushing %s\n", n.Name)
				d, err := registry.Push(cmd.Context(), addr, n.Name, n.Image)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "    pushed %s (%s) in %s\n", n.Name, d, time.Since(start).Round(time.Millisecond))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "name", "", "push the archive's one image under this name instead of its own")
	return cmd
}

func newImageBuildCmd(g *globals, o *imageOptions) *cobra.Command {
	var as, dir string
	cmd := &cobra.Command{
		Use:   "build PACKAGE --name NAME:TAG",
		Short: "Build a Go main package into a static binary, make an image of it on a minimal base, and push it",
		Long: `Build a Go main package the way ko does: go build with CGO_ENABLED=0 for linux/amd64, the
binary at /NAME as the entrypoint, on a base of /etc/passwd, /etc/group, CA certificates and /tmp.`,
		Example: `  convoy image build ./examples/web --name registry.convoy.local/web:1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if as == "" {
				return usageError("pass --name %s/REPO:TAG, the name pods will give the image", registry.Host)
			}
			addr, err := o.addr()
			if err != nil {
				return err
			}
			if _, err := registry.Target(addr, as); err != nil {
				return err
			}
			scratch, err := os.MkdirTemp("", "convoy-image-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			out := g.streams.Out
			pkg := args[0]
			base := filepath.Base(strings.TrimRight(pkg, "/"))
			if base == "." || base == "" {
				base = "app"
			}
			bin := filepath.Join(scratch, base)
			fmt.Fprintf(out, "==> building %s (static, linux/amd64)\n", pkg)
			start := time.Now()
			gb := exec.CommandContext(cmd.Context(), "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
			gb.Dir, gb.Stdout, gb.Stderr = dir, g.streams.ErrOut, g.streams.ErrOut
			gb.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
			if err := gb.Run(); err != nil {
				return fmt.Errorf("go build %s: %w", pkg, err)
			}
			fmt.Fprintf(out, "    built in %s\n", time.Since(start).Round(time.Millisecond))
			img, err := image.FromBinary(bin, image.Build{Base: true})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "==> pushing %s\n", as)
			d, err := registry.Push(cmd.Context(), addr, as, img)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "    pushed %s (%s)\n", as, d)
			return nil
		},
	}
	cmd.Flags().StringVar(&as, "name", "", "the image's name, "+registry.Host+"/REPO:TAG")
	cmd.Flags().StringVar(&dir, "dir", "", "the directory go build runs in (default: the current one)")
	return cmd
}

func newImageListCmd(g *globals, o *imageOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the images in the fleet registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addr, err := o.addr()
			if err != nil {
				return err
			}
			entries, err := registry.List(cmd.Context(), addr)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "IMAGE\tDIGEST\tSIZE\tCREATED")
			for _, e := range entries {
				created := "-"
				if !e.Created.IsZero() {
					created = e.Created.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, shortDigest(e.Digest), humanBytes(e.Size), created)
			}
			return tw.Flush()
		},
	}
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
