package v1alpha1

import "encoding/json"

// The contract between a catalog package and Convoy: a package is a Helm chart with one more
// file, PackageFile, beside its Chart.yaml. It says what the service is (Category), what its
// connection Secret holds (Outputs), which plans it has and how its images are made. The chart
// must render a Secret named BindingSecretName(release) of type "servicebinding.io/" + Type,
// with the keys "type", "provider" and every one of Outputs: that Secret is what a
// ServiceBinding projects into a workload's pods (servicebinding.io's Provisioned Service).
const (
	// PackageFile is the metadata file of a package, at the root of its chart.
	PackageFile = "convoy-package.yaml"
	// PackageAPIVersion and PackageKind head PackageFile.
	PackageAPIVersion = "catalog.convoy.dev/v1alpha1"
	PackageKind       = "Package"
	// CatalogRepository is the repository prefix of packages in the fleet registry: package
	// NAME version V is the OCI artifact CatalogRepository/NAME:V, as `helm push` makes it.
	CatalogRepository = "catalog"
	// LabelCatalogPackage is on the Placement `convoy catalog install` makes, naming the
	// package; LabelCatalogPlan names the plan.
	LabelCatalogPackage = "catalog.convoy.dev/package"
	LabelCatalogPlan    = "catalog.convoy.dev/plan"
	// PlanValue is the value key that selects a plan (`--set plan=ha`).
	PlanValue = "plan"
)

// BindingSecretName is the connection Secret a package's chart makes for release.
func BindingSecretName(release string) string { return release + "-binding" }

// PackageCategories are the categories a package may be in.
var PackageCategories = []string{"database", "cache", "messaging", "streaming", "machine-learning", "other"}

// Package is the content of PackageFile.
//
// +kubebuilder:object:generate=false
type Package struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Category is one of PackageCategories.
	Category string `json:"category"`
	// Type is the Service Binding type of the connection Secret (postgresql, redis, ...).
	// A package without one (a batch job template) has no connection Secret.
	Type string `json:"type,omitempty"`
	// Outputs are the keys of the connection Secret besides type and provider: host, port,
	// username, password, database, uri, ...
	Outputs []string `json:"outputs,omitempty"`
	// Plans are the shapes the service comes in. The first is the default.
	Plans []PackagePlan `json:"plans"`
	// Images are the images the chart runs, made when the package is pushed and pushed to the
	// fleet registry with it.
	Images []PackageImage `json:"images,omitempty"`
}

// PackagePlan is one shape of a service: values laid under the user's own.
//
// +kubebuilder:object:generate=false
type PackagePlan struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Values      json.RawMessage `json:"values,omitempty"`
}

// PackageImage is one image of a package, made from Debian packages or from a Go module:
// exactly one of Debian and Go says what it is made of.
//
// +kubebuilder:object:generate=false
type PackageImage struct {
	// Name is the image as pods name it: registry.convoy.local/REPO:TAG.
	Name string `json:"name"`
	// Debian makes it of Debian packages.
	Debian *DebianImage `json:"debian,omitempty"`
	// Go makes it of a main package of a Go module, built from the module proxy.
	Go *GoImage `json:"go,omitempty"`
}

// DebianImage is an image of Debian packages and their dependencies, unpacked without
// running maintainer scripts (internal/image.FromDebian makes it).
//
// +kubebuilder:object:generate=false
type DebianImage struct {
	// Packages are installed with everything they depend on (not what they recommend).
	Packages []string `json:"packages"`
	// Exclude are dependencies left out, with what only they need: the tools of maintainer
	// scripts (perl, debconf, adduser), init scripts and locales that a container never runs.
	Exclude []string `json:"exclude,omitempty"`
	// ImageRuntime: its users, data directories, entrypoint and environment. Its Env is added
	// to PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin.
	ImageRuntime `json:",inline"`
}

// ImageRuntime is what a package's image runs as and with, whatever it is made of.
//
// +kubebuilder:object:generate=false
type ImageRuntime struct {
	// Users are extra /etc/passwd lines (NAME:x:UID:GID:GECOS:HOME:SHELL); each gets a group
	// of its GID and name too.
	Users []string `json:"users,omitempty"`
	// Dirs are made, empty and owned by Owner, for the service's data and sockets.
	Dirs []string `json:"dirs,omitempty"`
	// Owner is the UID:GID that owns Dirs (default 0:0).
	Owner string `json:"owner,omitempty"`
	// Entrypoint and Cmd of the image; User runs them (a UID; empty: root).
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	User       string   `json:"user,omitempty"`
	// Env is added to the image's PATH (a PATH of its own replaces that).
	Env []string `json:"env,omitempty"`
}

// GoImage is an image of one static executable built from a Go module in the module proxy
// (go install -trimpath PACKAGE@VERSION with CGO_ENABLED=0), at /usr/local/bin/NAME, on a
// base of /etc/passwd, /etc/group, the CA certificates and /tmp (internal/image.FromGo makes
// it). NAME is what go install names it: the package's last element.
//
// +kubebuilder:object:generate=false
type GoImage struct {
	// Module is the module's path (github.com/FerretDB/FerretDB).
	Module string `json:"module"`
	// Version is the module's version: an exact semantic version such as v1.24.2, not a
	// query (latest, a branch), so that the image is the same whenever it is made.
	Version string `json:"version"`
	// Package is the import path of the main package to build (default: Module).
	Package string `json:"package,omitempty"`
	// Files are added to the module's source before it is built (a path in the module, and
	// its content): the files a module's release process generates and its module lacks, such
	// as FerretDB's build/version/version.txt. With files, the package is built with go build
	// in a copy of the module's source (with its go.mod and go.sum), not with go install.
	Files map[string]string `json:"files,omitempty"`
	// ImageRuntime: its users, data directories, entrypoint (default: the executable) and
	// environment. Its Env is added to PATH=/usr/local/bin:/usr/bin:/bin and
	// SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt.
	ImageRuntime `json:",inline"`
}
