package kubeproc

import (
	"fmt"
	"time"

	"sigs.k8s.io/yaml"
)

// AuthorizationWebhook is a webhook authorizer of kube-apiserver that is asked before RBAC
// (and Node), and only about the requests its MatchConditions select. A failed call is no
// opinion, so the authorizers after it decide; its answers are not cached, so it is asked
// again each time (it runs on loopback).
type AuthorizationWebhook struct {
	// Name is the authorizer's name in the API server's metrics (a DNS label).
	Name string
	// Kubeconfig is the path of a kubeconfig whose server is the webhook's URL and whose
	// user is the API server's identity towards it.
	Kubeconfig string
	// MatchConditions are CEL expressions over the SubjectAccessReview (v1), all of which
	// must hold for the webhook to be asked.
	MatchConditions []string
	// Timeout bounds one call; zero means 3 s.
	Timeout time.Duration
}

// AuthorizationConfig is an AuthorizationConfiguration (apiserver.config.k8s.io/v1) for
// --authorization-config: the webhooks in order, then Node when node is set, then RBAC.
func AuthorizationConfig(webhooks []AuthorizationWebhook, node bool) ([]byte, error) {
	type matchCondition struct {
		Expression string `json:"expression"`
	}
	type connectionInfo struct {
		Type           string `json:"type"`
		KubeConfigFile string `json:"kubeConfigFile"`
	}
	type webhook struct {
		Timeout                                  string           `json:"timeout"`
		CacheAuthorizedRequests                  bool             `json:"cacheAuthorizedRequests"`
		CacheUnauthorizedRequests                bool             `json:"cacheUnauthorizedRequests"`
		SubjectAccessReviewVersion               string           `json:"subjectAccessReviewVersion"`
		MatchConditionSubjectAccessReviewVersion string           `json:"matchConditionSubjectAccessReviewVersion"`
		FailurePolicy                            string           `json:"failurePolicy"`
		ConnectionInfo                           connectionInfo   `json:"connectionInfo"`
		MatchConditions                          []matchCondition `json:"matchConditions,omitempty"`
	}
	type authorizer struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Webhook *webhook `json:"webhook,omitempty"`
	}
	cfg := struct {
		APIVersion  string       `json:"apiVersion"`
		Kind        string       `json:"kind"`
		Authorizers []authorizer `json:"authorizers"`
	}{APIVersion: "apiserver.config.k8s.io/v1", Kind: "AuthorizationConfiguration"}
	for _, w := range webhooks {
		if w.Name == "" || w.Kubeconfig == "" {
			return nil, fmt.Errorf("authorization webhook %q: a name and a kubeconfig are required", w.Name)
		}
		timeout := w.Timeout
		if timeout == 0 {
			timeout = 3 * time.Second
		}
		wh := &webhook{
			Timeout:                    timeout.String(),
			SubjectAccessReviewVersion: "v1", MatchConditionSubjectAccessReviewVersion: "v1",
			FailurePolicy:  "NoOpinion",
			ConnectionInfo: connectionInfo{Type: "KubeConfigFile", KubeConfigFile: w.Kubeconfig},
		}
		for _, m := range w.MatchConditions {
			wh.MatchConditions = append(wh.MatchConditions, matchCondition{Expression: m})
		}
		cfg.Authorizers = append(cfg.Authorizers, authorizer{Type: "Webhook", Name: w.Name, Webhook: wh})
	}
	if node {
		cfg.Authorizers = append(cfg.Authorizers, authorizer{Type: "Node", Name: "node"})
	}
	cfg.Authorizers = append(cfg.Authorizers, authorizer{Type: "RBAC", Name: "rbac"})
	return yaml.Marshal(cfg)
}
