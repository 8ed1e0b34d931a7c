// Command convoy-volume makes and removes the directories behind the volumes of a local
// cluster's default StorageClass. local-path-provisioner runs it in a helper pod on the node
// that will hold the volume (its setupCommand and teardownCommand), as
//
//	convoy-volume -p PATH -s SIZE_BYTES -m Filesystem|Block -a create|delete
//
// with PATH under the node's volume directory, which the helper pod mounts. `make` builds it
// statically, and the local provider packs it into the image registry.convoy.local/convoy/volume.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	path := flag.String("p", "", "the volume's directory")
	_ = flag.Int64("s", 0, "the volume's size in bytes (not enforced: the directory shares its node's disk)")
	mode := flag.String("m", "Filesystem", "the volume mode; only Filesystem is supported")
	action := flag.String("a", "", "create or delete")
	flag.Parse()
	if err := run(*path, *mode, *action); err != nil {
		fmt.Fprintln(os.Stderr, "convoy-volume:", err)
		os.Exit(1)
	}
}

func run(path, mode, action string) error {
	if path == "" || !filepath.IsAbs(path) || filepath.Clean(path) == "/" {
		return fmt.Errorf("-p must be a volume's absolute directory, not %q", path)
	}
	if mode != "Filesystem" {
		return fmt.Errorf("volume mode %q is not supported; use volumeMode: Filesystem", mode)
	}
	switch action {
	case "create":
		if err := os.MkdirAll(path, 0o777); err != nil {
			return err
		}
		return os.Chmod(path, 0o777) // any user of the pod may write to it, as with local-path's own script
	case "delete":
		return os.RemoveAll(path)
	default:
		return fmt.Errorf("-a must be create or delete, not %q", action)
	}
}
