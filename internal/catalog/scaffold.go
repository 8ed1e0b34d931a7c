package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/convoy-dev/convoy/api/v1alpha1"
)

// ScaffoldOptions say what Scaffold writes. Zero fields take the defaults: Debian's memcached
// on port 11211, a cache of type memcached, app version 1.0.0.
type ScaffoldOptions struct {
	// Name is the package's (the chart's) name; default: the directory's base name.
	Name string
	// Debian is the Debian package the image runs (default memcached).
	Debian string
	// Port is the TCP port the service listens on (default 11211 for memcached; required for
	// any other Debian package).
	Port int
	// Category is one of v1alpha1.PackageCategories (default cache for memcached, else other).
	Category string
	// Type is the Service Binding type of the connection Secret (default memcached for
	// memcached, else Name).
	Type string
	// AppVersion is the chart's appVersion and the image's tag (default 1.0.0).
	AppVersion string
}

// ScaffoldDebian is the Debian package a scaffold runs when ScaffoldOptions.Debian is empty.
const ScaffoldDebian = "memcached"

var (
	debianRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// scaffoldData is what the templates of a scaffold see.
type scaffoldData struct {
	ScaffoldOptions
	Memcached   bool   // the default: the command is known, no TODO
	GuessedCat  bool   // the category is a guess (other), marked TODO
	Image       string // registry.convoy.local/services/NAME:APPVERSION
	PortName    string // the container's and the Service's port name (an IANA service name)
	Program     string // the image's entrypoint
	User        string // the /etc/passwd name of UID 999
	Description string
	Exclude     string
}

// Scaffold writes a new package into dir (made if missing; it must be empty): a chart that runs
// o.Debian in a StatefulSet, with its Service, its connection Secret, a Helm test and the
// metadata, that passes Lint as written. It returns the files written.
func Scaffold(dir string, o ScaffoldOptions) ([]string, error) {
	d, err := scaffoldDefaults(dir, o)
	if err != nil {
		return nil, err
	}
	switch entries, err := os.ReadDir(dir); {
	case err == nil && len(entries) > 0:
		return nil, fmt.Errorf("%s exists and is not empty: give a new directory (--dir) or remove it first", dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: %w (give a new directory)", dir, err)
	}
	var written []string
	for _, f := range scaffoldFiles {
		var buf bytes.Buffer
		t := template.Must(template.New(f.path).Delims("[%", "%]").Option("missingkey=error").Parse(f.text))
		if err := t.Execute(&buf, d); err != nil {
			return written, fmt.Errorf("scaffold %s: %w", f.path, err)
		}
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

// scaffoldDefaults fills in o's defaults and checks every field, each error saying what to do.
func scaffoldDefaults(dir string, o ScaffoldOptions) (scaffoldData, error) {
	if o.Name == "" {
		o.Name = filepath.Base(filepath.Clean(dir))
	}
	if !nameRE.MatchString(o.Name) {
		return scaffoldData{}, fmt.Errorf("package name %q: use lower-case letters, digits and '-', at most 40, starting with a letter and not ending with '-'", o.Name)
	}
	if o.Debian == "" {
		o.Debian = ScaffoldDebian
	}
	if !debianRE.MatchString(o.Debian) {
		return scaffoldData{}, fmt.Errorf("the Debian package %q: give the name of one Debian package (apt-cache show NAME), such as %s", o.Debian, ScaffoldDebian)
	}
	memcached := o.Debian == ScaffoldDebian
	if o.Port == 0 && memcached {
		o.Port = 11211
	}
	if o.Port <= 0 || o.Port > 65535 {
		if o.Port == 0 {
			return scaffoldData{}, fmt.Errorf("give the TCP port %s listens on (--port)", o.Debian)
		}
		return scaffoldData{}, fmt.Errorf("port %d: give a TCP port, 1 to 65535", o.Port)
	}
	guessedCat := o.Category == "" && !memcached
	if o.Category == "" {
		o.Category = "other"
		if memcached {
			o.Category = "cache"
		}
	}
	if !slices.Contains(v1alpha1.PackageCategories, o.Category) {
		return scaffoldData{}, fmt.Errorf("category %q: use one of %s", o.Category, strings.Join(v1alpha1.PackageCategories, ", "))
	}
	if o.Type == "" {
		o.Type = o.Name
		if memcached {
			o.Type = "memcached"
		}
	}
	if !nameRE.MatchString(o.Type) {
		return scaffoldData{}, fmt.Errorf("type %q: give the Service Binding type (postgresql, redis, ...): lower-case letters, digits and '-'", o.Type)
	}
	if o.AppVersion == "" {
		o.AppVersion = "1.0.0"
	}
	if !tagRE.MatchString(o.AppVersion) {
		return scaffoldData{}, fmt.Errorf("app version %q: it tags the image, so use letters, digits, '.', '_' and '-' (for example 1.6.18)", o.AppVersion)
	}
	d := scaffoldData{
		ScaffoldOptions: o,
		Memcached:       memcached,
		GuessedCat:      guessedCat,
		Image:           "registry.convoy.local/services/" + o.Name + ":" + o.AppVersion,
		PortName:        o.Type,
		Program:         "/usr/bin/" + o.Debian,
		User:            o.Name,
		Description:     "Debian's " + o.Debian + ", run by Convoy",
		Exclude:         strings.Join(scaffoldExclude, ", "),
	}
	// A port's name is an IANA service name: at most 15 characters, no "--".
	if len(d.PortName) > 15 || strings.Contains(d.PortName, "--") {
		d.PortName = "service"
	}
	if len(d.User) > 32 {
		d.User = "service"
	}
	if memcached {
		d.User = "memcache"
		d.Description = "Memcached, an in-memory key-value cache (Debian's memcached)"
	}
	return d, nil
}

// scaffoldExclude are the dependencies an image leaves out: the tools of maintainer scripts and
// init scripts, which a container never runs (as catalog/redis has it).
var scaffoldExclude = []string{"adduser", "lsb-base", "init-system-helpers", "sysvinit-utils", "usrmerge", "usr-is-merged", "perl", "perl-base", "debconf", "cdebconf"}

// scaffoldFiles are the files of a scaffold, in the order written: Go templates with the
// delimiters [% %], so that Helm's {{ }} stay as they are.
var scaffoldFiles = []struct{ path, text string }{
	{"Chart.yaml", `apiVersion: v2
name: [% .Name %]
[%- if not .Memcached %]
# TODO(packager): say in one line what the service is.
[%- end %]
description: [% printf "%q" .Description %]
type: application
# version is the package's: bump it on every change you push.
version: 0.1.0
# appVersion is the service's, and the tag of its image (values.yaml, convoy-package.yaml).
appVersion: [% printf "%q" .AppVersion %]
`},
	{v1alpha1.PackageFile, `apiVersion: ` + v1alpha1.PackageAPIVersion + `
kind: ` + v1alpha1.PackageKind + `
[%- if .GuessedCat %]
# TODO(packager): the category, one of ` + strings.Join(v1alpha1.PackageCategories, ", ") + `.
[%- end %]
category: [% .Category %]
# type and outputs are the connection Secret's (templates/secret.yaml): RELEASE-binding, of type
# servicebinding.io/TYPE, with the keys type, provider and every output.
type: [% .Type %]
outputs: [host, port, password]
# plans are the shapes the service comes in; the first is the default. A plan's values are laid
# under the user's own (convoy catalog install [% .Name %] --plan ephemeral, or --set plan=ephemeral),
# and each plan must pass values.schema.json: convoy package lint renders every one.
plans:
- name: standard
  description: one server with its data on a volume (kept across restarts)
  values: {persistence: {enabled: true}}
- name: ephemeral
  description: one server without a volume (its data is lost when its pod goes)
  values: {persistence: {enabled: false}}
# images are made of Debian packages when the package is pushed (convoy package push) and pushed
# with it to the fleet registry. Maintainer scripts do not run: users, directories and the
# entrypoint are made here instead.
images:
- name: [% .Image %]
  debian:
    # netcat-openbsd is for the Helm test (templates/tests/connect.yaml).
    packages: [[% .Debian %], netcat-openbsd]
    exclude: [[% .Exclude %]]
    users: ["[% .User %]:x:999:999:[% .User %]:/data:/usr/sbin/nologin"]
    dirs: [/data]
    owner: "999:999"
[%- if not .Memcached %]
    # TODO(packager): the program of [% .Debian %] that runs the service (a guess; the StatefulSet's
    # command overrides it).
[%- end %]
    entrypoint: [[% .Program %]]
    user: "999"
`},
	{"values.yaml", `# The image the package pushes with itself (made of Debian's [% .Debian %]; see convoy-package.yaml).
image: [% .Image %]
persistence:
  # enabled keeps /data on a volume (a PersistentVolumeClaim of the StatefulSet); else it is an
  # emptyDir, lost with the pod.
  enabled: true
  size: 1Gi
  # storageClass "" is the cluster's default.
  storageClass: ""
resources:
  requests: {cpu: 50m, memory: 64Mi}
`},
	{"values.schema.json", `{
  "$schema": "https://json-schema.org/draft-07/schema#",
  "type": "object",
  "additionalProperties": false,
  "required": ["image", "persistence", "resources"],
  "properties": {
    "image": {"type": "string", "minLength": 1},
    "persistence": {
      "type": "object",
      "additionalProperties": false,
      "required": ["enabled", "size"],
      "properties": {
        "enabled": {"type": "boolean"},
        "size": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti)$"},
        "storageClass": {"type": "string"}
      }
    },
    "resources": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "requests": {"$ref": "#/definitions/quantities"},
        "limits": {"$ref": "#/definitions/quantities"}
      }
    }
  },
  "definitions": {
    "quantity": {"type": ["string", "number"], "pattern": "^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"},
    "quantities": {
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "cpu": {"$ref": "#/definitions/quantity"},
        "memory": {"$ref": "#/definitions/quantity"},
        "ephemeral-storage": {"$ref": "#/definitions/quantity"}
      }
    }
  }
}
`},
	{"templates/statefulset.yaml", `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .Release.Name }}-[% .Name %]
  labels: {app.kubernetes.io/name: [% .Name %], app.kubernetes.io/instance: {{ .Release.Name }}}
spec:
  serviceName: {{ .Release.Name }}-[% .Name %]
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: [% .Name %], app.kubernetes.io/instance: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: [% .Name %], app.kubernetes.io/instance: {{ .Release.Name }}}
    spec:
      securityContext: {runAsUser: 999, runAsGroup: 999, fsGroup: 999}
      containers:
      - name: [% .Name %]
        image: {{ .Values.image }}
[%- if .Memcached %]
        command: [/usr/bin/memcached, -u, memcache, -p, "[% .Port %]"]
[%- else %]
        # TODO(packager): run [% .Debian %] in the foreground, listening on every address on port
        # [% .Port %] and keeping its data in /data: its program (a guess) and its flags or config.
        command: [[% .Program %]]
[%- end %]
        # The connection Secret's password, for a service that takes one.
        env:
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: {{ .Release.Name }}-binding, key: password}}
        ports: [{name: [% .PortName %], containerPort: [% .Port %]}]
        readinessProbe:
          tcpSocket: {port: [% .PortName %]}
          periodSeconds: 5
        livenessProbe:
          tcpSocket: {port: [% .PortName %]}
          initialDelaySeconds: 10
          periodSeconds: 10
          failureThreshold: 3
        resources: {{- toYaml .Values.resources | nindent 10 }}
        volumeMounts: [{name: data, mountPath: /data}]
      {{- if not .Values.persistence.enabled }}
      volumes: [{name: data, emptyDir: {}}]
      {{- end }}
  {{- if .Values.persistence.enabled }}
  volumeClaimTemplates:
  - metadata:
      name: data
      # Convoy finds the release's volumes by app.kubernetes.io/instance (uninstall --delete-data).
      labels: {app.kubernetes.io/name: [% .Name %], app.kubernetes.io/instance: {{ .Release.Name }}}
    spec:
      accessModes: [ReadWriteOnce]
      {{- with .Values.persistence.storageClass }}
      storageClassName: {{ . }}
      {{- end }}
      resources: {requests: {storage: {{ .Values.persistence.size }}}}
  {{- end }}
`},
	{"templates/service.yaml", `apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-[% .Name %]
  labels: {app.kubernetes.io/name: [% .Name %], app.kubernetes.io/instance: {{ .Release.Name }}}
spec:
  type: ClusterIP
  selector: {app.kubernetes.io/name: [% .Name %], app.kubernetes.io/instance: {{ .Release.Name }}}
  ports: [{name: [% .PortName %], port: [% .Port %], targetPort: [% .PortName %]}]
`},
	{"templates/secret.yaml", `{{- /* The connection Secret (servicebinding.io): its password is made once and kept. */ -}}
{{- $name := printf "%s-binding" .Release.Name -}}
{{- $old := lookup "v1" "Secret" .Release.Namespace $name -}}
{{- $password := randAlphaNum 24 -}}
{{- if and $old $old.data (index $old.data "password") }}{{ $password = index $old.data "password" | b64dec }}{{ end -}}
{{- $host := printf "%s-[% .Name %].%s.svc.cluster.local" .Release.Name .Release.Namespace -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  labels: {app.kubernetes.io/name: [% .Name %], app.kubernetes.io/instance: {{ .Release.Name }}}
type: servicebinding.io/[% .Type %]
stringData:
  type: [% .Type %]
  provider: convoy
  host: {{ $host }}
  port: "[% .Port %]"
  password: {{ $password | quote }}
`},
	{"templates/tests/connect.yaml", `# Helm's test (convoy package test, helm test): the service answers on its port.
apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-[% .Name %]-test
  # Not the Service's selector: the test pod must not become one of its endpoints.
  labels: {app.kubernetes.io/name: [% .Name %]-test, app.kubernetes.io/instance: {{ .Release.Name }}}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 999}
  containers:
  - name: connect
    image: {{ .Values.image }}
    # netcat-openbsd's nc (its /bin/nc is made by a maintainer script, which images do not run).
    command: [/bin/nc.openbsd, -z, -w, "5", {{ .Release.Name }}-[% .Name %], "[% .Port %]"]
`},
	{".helmignore", `# Files left out of the chart when it is packaged (helm package, convoy package push).
.DS_Store
.git/
.gitignore
.bzr/
.bzrignore
.hg/
.hgignore
.svn/
*.swp
*.bak
*.tmp
*.orig
*~
.project
.idea/
*.tmproj
.vscode/
`},
	{"README.md", `# [% .Name %]

[% .Description %]. A Convoy catalog package: a Helm chart with a ` + "`" + v1alpha1.PackageFile + "`" + `
beside its ` + "`Chart.yaml`" + `, written by ` + "`convoy package init`" + `.
[%- if not .Memcached %]
Its guesses are marked ` + "`TODO(packager)`" + `: ` + "`grep -rn 'TODO(packager)' .`" + ` finds them.
[%- end %]

| File | What it is for |
|---|---|
| ` + "`Chart.yaml`" + ` | the chart's name, version (bump it on every push), appVersion and description |
| ` + "`" + v1alpha1.PackageFile + "`" + ` | Convoy's metadata: category, the connection Secret's type and outputs, the plans, the image's Debian packages |
| ` + "`values.yaml`" + ` | the default values |
| ` + "`values.schema.json`" + ` | which values are valid (no others: ` + "`additionalProperties: false`" + `) |
| ` + "`templates/statefulset.yaml`" + ` | the service: one pod of Debian's [% .Debian %] on port [% .Port %], ` + "`/data`" + ` on a volume when ` + "`persistence.enabled`" + ` |
| ` + "`templates/service.yaml`" + ` | the ClusterIP Service RELEASE-[% .Name %] |
| ` + "`templates/secret.yaml`" + ` | the connection Secret RELEASE-binding (` + "`servicebinding.io/[% .Type %]`" + `): type, provider, host, port, password (made once, kept across upgrades) |
| ` + "`templates/tests/connect.yaml`" + ` | Helm's test: a pod that checks the service answers on its port |
| ` + "`.helmignore`" + ` | files left out of the packaged chart |

Every object, and the StatefulSet's volume claim templates, is labelled
` + "`app.kubernetes.io/instance: RELEASE`" + `: Convoy finds a release's objects and volumes by it.

## Commands

` + "```" + `sh
convoy package lint [% .Name %]    # Helm's lint with every plan, the metadata, the connection Secret
convoy package test [% .Name %]    # install it and run its Helm test (templates/tests)
convoy package push [% .Name %]    # make its image of Debian packages, push the image and the chart
convoy catalog install [% .Name %] --name NAME -n NAMESPACE [--plan ephemeral]
` + "```" + `

## Install, upgrade, backup and restore

- **Install** renders the first plan unless ` + "`--plan`" + ` names another, and is Available once the
  StatefulSet's pod is Ready: keep its readiness probe a true check of the service.
- **Upgrade** (` + "`convoy catalog upgrade NAME --version V`" + `) rolls the new chart out one cluster per
  wave. Bump ` + "`Chart.yaml`" + `'s version on every push; keep the password's ` + "`lookup`" + ` so it
  stays; a change to the volume claim templates cannot be made in place and is refused.
- **Backup and restore** are actions: CronJobs labelled ` + "`catalog.convoy.dev/action: backup`" + ` and
  ` + "`restore`" + `, which ` + "`convoy catalog backup|restore NAME`" + ` runs on demand (a backup may also
  run on its schedule; keep the restore suspended), writing to and reading from a volume of
  their own. A cache keeps no data worth a backup, so none is
  scaffolded; ` + "`catalog/postgres/templates/jobs.yaml`" + ` in Convoy's repository shows the shape.
`},
}
