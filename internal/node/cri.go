package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// stopPods stops the node's containers (SIGTERM, then SIGKILL after grace) and removes its pod
// sandboxes through containerd's CRI, as a kubelet would: containerd then releases each pod's
// network (CNI DEL: its address, its cached result, its network namespace).
func stopPods(ctx context.Context, socket string, grace time.Duration) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	cs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, c := range cs.Containers {
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		wg.Go(func() {
			if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.Id, Timeout: int64(grace.Seconds())}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stop container %s: %w", c.Metadata.GetName(), err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list pods: %w", err))...)
	}
	for _, p := range pods.Items {
		wg.Go(func() {
			_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
			if err == nil {
				_, err = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("remove pod %s/%s: %w", p.Metadata.GetNamespace(), p.Metadata.GetName(), err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// prepull pulls the node's Spec.Prepull images through containerd's CRI, one after the other,
// in the background: a pull is only a head start on the kubelet's own (which then finds the
// image there, or joins the pull under way), so a failure is logged and nothing more.
func (n *Node) prepull() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	n.stopPull, n.pulled = cancel, make(chan struct{})
	go func() {
		defer close(n.pulled)
		defer cancel()
		if len(n.Spec.Prepull) == 0 {
			return
		}
		conn, err := grpc.NewClient("unix://"+n.Spec.containerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			n.log.Warn("images not pulled ahead", "err", err)
			return
		}
		defer conn.Close()
		images := runtimeapi.NewImageServiceClient(conn)
		for _, ref := range n.Spec.Prepull {
			start := time.Now()
			var err error
			// containerd answers on its socket a moment before its CRI plugin serves.
			for try := 0; try < 10; try++ {
				_, err = images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
				if status.Code(err) != codes.Unavailable && status.Code(err) != codes.Unimplemented {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				n.log.Warn("image not pulled ahead; the kubelet pulls it when a pod needs it", "image", ref, "err", err)
				continue
			}
			n.log.Debug("image pulled ahead", "image", ref, "took", time.Since(start))
		}
	}()
}

// cniCacheDir is where libcni, in containerd 1.6, caches each pod's network result; it cannot
// be moved per node.
const cniCacheDir = "/var/lib/cni/results"

// forgetPodNetworks removes libcni's cached results of the node's pods, which stay when the
// pods were killed rather than removed (a runtime that died): they are named after the pod's
// sandbox, whose directory containerd keeps in its root. It returns the network namespaces
// (in /run/netns) that those results name: a pod's namespace outlives its processes (a sandbox
// whose pause process is gone, or that never started one), so teardown cannot find every one
// through the processes in it.
func forgetPodNetworks(s Spec) ([]string, error) {
	sandboxes, err := os.ReadDir(filepath.Join(s.containerdRoot(), "io.containerd.grpc.v1.cri", "sandboxes"))
	if err != nil || len(sandboxes) == 0 {
		return nil, nil
	}
	cached, err := os.ReadDir(cniCacheDir)
	if err != nil {
		return nil, nil
	}
	var errs []error
	var netns []string
	for _, f := range cached {
		for _, sb := range sandboxes {
			if strings.Contains(f.Name(), "-"+sb.Name()+"-") {
				path := filepath.Join(cniCacheDir, f.Name())
				if raw, err := os.ReadFile(path); err == nil {
					netns = append(netns, cachedNetNS(raw)...)
				}
				if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
	}
	return netns, errors.Join(errs...)
}

// cachedNetNS is the named network namespaces that one of libcni's cached results names: its
// netns (newer libcni) and its interfaces' sandboxes (the CNI result's own record of where each
// interface is), in netnsDir.
func cachedNetNS(raw []byte) []string {
	var c struct {
		NetNS  string `json:"netns"`
		Result struct {
			Interfaces []struct {
				Sandbox string `json:"sandbox"`
			} `json:"interfaces"`
		} `json:"result"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return nil
	}
	paths := []string{c.NetNS}
	for _, i := range c.Result.Interfaces {
		paths = append(paths, i.Sandbox)
	}
	var out []string
	for _, p := range paths {
		// /var/run is /run on every system containerd runs on.
		p = filepath.Clean(strings.Replace(p, "/var/run/", "/run/", 1))
		// containerd names its pods' namespaces cni-UUID; a node's own is convoy-HASH.
		if filepath.Dir(p) == netnsDir && strings.HasPrefix(filepath.Base(p), "cni-") && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
