package logship

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// HTTPSender sends batches to the hub's log insert endpoint (v1alpha1.LogsInsertPath) with a
// bearer token, read from TokenFile for every request so that a rotated token is used at once.
type HTTPSender struct {
	URL       string
	TokenFile string
	Client    *http.Client
}

// Send is a Shipper's Send.
func (h HTTPSender) Send(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/stream+json")
	req.Header.Set("Content-Encoding", "gzip")
	if h.TokenFile != "" {
		token, err := os.ReadFile(h.TokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so that the connection is reused
	if resp.StatusCode/100 == 2 {
		return nil
	}
	se := &SendError{Status: resp.StatusCode, Message: strings.TrimSpace(string(msg))}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		se.RetryAfter = time.Duration(s) * time.Second
	}
	return se
}

// PodContainers lists the containers of pods whose logs a collector follows: every container,
// init and ephemeral container that has run, and the previous instance of each that restarted
// (its log is kept until the next restart, and may not have been read to its end).
func PodContainers(pods []*corev1.Pod) []Container {
	var out []Container
	for _, p := range pods {
		statuses := append(append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...),
			p.Status.ContainerStatuses...), p.Status.EphemeralContainerStatuses...)
		add := func(name, id string) {
			if _, id, ok := strings.Cut(id, "://"); ok && id != "" {
				out = append(out, Container{Namespace: p.Namespace, Pod: p.Name, Name: name, ID: id, Node: p.Spec.NodeName, Labels: p.Labels})
			}
		}
		for _, cs := range statuses {
			add(cs.Name, cs.ContainerID)
			if t := cs.LastTerminationState.Terminated; t != nil && t.ContainerID != cs.ContainerID {
				add(cs.Name, t.ContainerID)
			}
		}
	}
	return out
}
