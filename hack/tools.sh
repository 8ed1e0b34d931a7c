#!/usr/bin/env bash
# Builds the pinned upstream tools into bin/, each only when bin/ lacks it at the pinned
# version. A version stamp in bin/.versions/NAME records what each binary was built from, so a
# second run with everything present takes seconds.
#
# usage: hack/tools.sh [--check]   (--check lists what would be built, and exits 1 if anything would)
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
bin="$root/bin"
stamps="$bin/.versions"
mkdir -p "$stamps"

# The versions, kept in one place (internal/version checks that it agrees).
KUBE_VERSION=v1.37.2
# The version before it, which the upgrade path starts from (hack/kube-1.36/go.mod pins it).
KUBE_PREVIOUS_VERSION=v1.36.3
KINE_VERSION=v0.17.5
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
GATEWAY_API_VERSION=v1.6.3

check=false
[[ "${1:-}" == "--check" ]] && check=true
missing=0

# needs NAME VERSION: true when bin/NAME is absent or was stamped with another version.
needs() {
  [[ -x "$bin/$1" && "$(cat "$stamps/$1" 2>/dev/null)" == "$2" ]] && return 1
  return 0
}

stamp() { echo "$2" > "$stamps/$1"; }

say() { printf '==> %s\n' "$*"; }

elapsed() { printf '%ss' "$(( $(date +%s) - $1 ))"; }

# The control plane and kubectl, and what a real node runs (kubelet, kube-proxy): one go build.
kube=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
kube_todo=()
for b in "${kube[@]}"; do
  needs "$b" "$KUBE_VERSION" && kube_todo+=("$b")
done
if ((${#kube_todo[@]})); then
  missing=1
  if $check; then
    echo "would build: ${kube_todo[*]} ($KUBE_VERSION)"
  else
    say "building ${kube_todo[*]} $KUBE_VERSION from k8s.io/kubernetes (hack/kube/go.mod)"
    say "  the first build takes 10-15 minutes on 2 cores; later builds reuse the Go build cache"
    t0=$(date +%s)
    pkgs=()
    for b in "${kube_todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
    (cd hack/kube && go build -trimpath -ldflags "-s -w \
        -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
        -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=$minor \
        -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" \
      -o "$bin/" "${pkgs[@]}")
    for b in "${kube_todo[@]}"; do stamp "$b" "$KUBE_VERSION"; done
    say "  built ${kube_todo[*]} in $(elapsed "$t0")"
  fi
fi

# The previous version, for upgrades: only what a member cluster runs (no kubectl), as one
# multi-call binary (one link step, not five) in bin/kubernetes/KUBE_PREVIOUS_VERSION/, where the
# local provider looks for other versions, with a link per program. Its packages are Kubernetes'
# other minor, so this is most of a second cold build; the seconds it took are kept beside its
# stamp, for make bench.
prev="$bin/kubernetes/$KUBE_PREVIOUS_VERSION"
prev_programs=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
if needs "kubernetes/$KUBE_PREVIOUS_VERSION/kube" "$KUBE_PREVIOUS_VERSION"; then
  missing=1
  if $check; then
    echo "would build: kubernetes/$KUBE_PREVIOUS_VERSION/kube (${prev_programs[*]})"
  else
    say "building ${prev_programs[*]} $KUBE_PREVIOUS_VERSION as one binary (hack/kube-1.36/go.mod), for upgrades"
    say "  the first build takes about 10 minutes on 2 cores; later builds reuse the Go build cache"
    t0=$(date +%s)
    minor=${KUBE_PREVIOUS_VERSION#v1.}; minor=${minor%%.*}
    mkdir -p "$prev" "$stamps/kubernetes/$KUBE_PREVIOUS_VERSION"
    (cd hack/kube-1.36 && go build -trimpath -ldflags "-s -w \
        -X k8s.io/component-base/version.gitVersion=$KUBE_PREVIOUS_VERSION \
        -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=$minor \
        -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_PREVIOUS_VERSION" \
      -o "$prev/kube" .)
    for b in "${prev_programs[@]}"; do ln -sfn kube "$prev/$b"; done
    stamp "kubernetes/$KUBE_PREVIOUS_VERSION/kube" "$KUBE_PREVIOUS_VERSION"
    echo "$(( $(date +%s) - t0 ))" > "$stamps/kubernetes/$KUBE_PREVIOUS_VERSION/build-seconds"
    say "  built kubernetes/$KUBE_PREVIOUS_VERSION/kube in $(elapsed "$t0")"
  fi
fi

# go_install NAME VERSION PACKAGE: builds one tool exactly as its own go.mod pins its dependencies.
go_install() {
  local name=$1 version=$2 pkg=$3
  needs "$name" "$version" || return 0
  missing=1
  if $check; then echo "would build: $name ($version)"; return 0; fi
  say "building $name $version ($pkg)"
  local t0; t0=$(date +%s)
  (cd "$root/hack" && GOBIN="$bin" GOFLAGS=-trimpath go install -ldflags "-s -w" "$pkg@$version")
  stamp "$name" "$version"
  say "  built $name in $(elapsed "$t0")"
}

go_install kine "$KINE_VERSION" github.com/k3s-io/kine
go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
# kwokctl is only the reference that `make bench` measures local clusters against.
go_install kwokctl "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwokctl
# helm is what users install charts into the hub with; the tests use the real CLI.
go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm

# controller-gen is pinned by hack/tools/go.mod (a tool directive).
cg_version=$(cd hack/tools && go list -m -f '{{.Version}}' sigs.k8s.io/controller-tools)
if needs controller-gen "$cg_version"; then
  missing=1
  if $check; then
    echo "would build: controller-gen ($cg_version)"
  else
    say "building controller-gen $cg_version (hack/tools/go.mod)"
    t0=$(date +%s)
    (cd hack/tools && go build -trimpath -o "$bin/controller-gen" sigs.k8s.io/controller-tools/cmd/controller-gen)
    stamp controller-gen "$cg_version"
    say "  built controller-gen in $(elapsed "$t0")"
  fi
fi

# The programs Convoy runs in pods on real nodes (CoreDNS, local-path-provisioner), static, in
# one build from hack/images/go.mod; the hub packs each into an image in the fleet registry.
images_version=$(cd hack/images && go list -m -f '{{.Path}}@{{.Version}}' github.com/coredns/coredns github.com/rancher/local-path-provisioner | tr '\n' ' ')
images_todo=()
for b in coredns local-path-provisioner; do
  needs "images/$b" "$images_version" && images_todo+=("$b")
done
if ((${#images_todo[@]})); then
  missing=1
  if $check; then
    echo "would build: ${images_todo[*]} ($images_version)"
  else
    say "building ${images_todo[*]} for real nodes' pods (hack/images/go.mod: $images_version)"
    t0=$(date +%s)
    mkdir -p "$bin/images" "$stamps/images"
    pkgs=()
    for b in "${images_todo[@]}"; do
      case $b in
        coredns) pkgs+=(./coredns) ;;
        local-path-provisioner) pkgs+=(github.com/rancher/local-path-provisioner) ;;
      esac
    done
    (cd hack/images && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/images/" "${pkgs[@]}")
    for b in "${images_todo[@]}"; do stamp "images/$b" "$images_version"; done
    say "  built ${images_todo[*]} in $(elapsed "$t0")"
  fi
fi

# The fleet's metrics store, which the hub runs (VictoriaMetrics single-node), and the members'
# collector, which agents run (vmagent), in one build from hack/observe/go.mod, which pins them;
# static, like the other programs.
observe_version=$(cd hack/observe && go list -m -f '{{.Version}}' github.com/VictoriaMetrics/VictoriaMetrics)
observe_todo=()
for b in victoria-metrics vmagent; do
  needs "$b" "$observe_version" && observe_todo+=("$b")
done
if ((${#observe_todo[@]})); then
  missing=1
  if $check; then
    echo "would build: ${observe_todo[*]} ($observe_version)"
  else
    say "building ${observe_todo[*]} $observe_version (hack/observe/go.mod)"
    t0=$(date +%s)
    pkgs=()
    for b in "${observe_todo[@]}"; do pkgs+=("github.com/VictoriaMetrics/VictoriaMetrics/app/$b"); done
    (cd hack/observe && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/" "${pkgs[@]}")
    for b in "${observe_todo[@]}"; do stamp "$b" "$observe_version"; done
    say "  built ${observe_todo[*]} in $(elapsed "$t0")"
  fi
fi

# The fleet's log store, which the hub runs (VictoriaLogs), built from hack/logs/go.mod, which
# pins it; a module of its own, since VictoriaLogs builds against a VictoriaMetrics of its own
# choosing. (The members' log collector is convoy's own: `convoy log-collector`.)
logs_version=$(cd hack/logs && go list -m -f '{{.Version}}' github.com/VictoriaMetrics/VictoriaLogs)
logs_todo=()
for b in victoria-logs; do
  needs "$b" "$logs_version" && logs_todo+=("$b")
done
if ((${#logs_todo[@]})); then
  missing=1
  if $check; then
    echo "would build: ${logs_todo[*]} ($logs_version)"
  else
    say "building ${logs_todo[*]} $logs_version (hack/logs/go.mod)"
    t0=$(date +%s)
    pkgs=()
    for b in "${logs_todo[@]}"; do pkgs+=("github.com/VictoriaMetrics/VictoriaLogs/app/$b"); done
    (cd hack/logs && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/" "${pkgs[@]}")
    for b in "${logs_todo[@]}"; do stamp "$b" "$logs_version"; done
    say "  built ${logs_todo[*]} in $(elapsed "$t0")"
  fi
fi

# The Gateway API's standard CRDs, which the hub installs for the edge load balancer: copied as
# released from the Go module, nothing built.
if needs gateway-api "$GATEWAY_API_VERSION"; then
  missing=1
  if $check; then
    echo "would fetch: the Gateway API CRDs ($GATEWAY_API_VERSION)"
  else
    say "fetching the Gateway API CRDs $GATEWAY_API_VERSION (sigs.k8s.io/gateway-api)"
    dir=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    rm -rf "$bin/gateway-api" && mkdir -p "$bin/gateway-api"
    for kind in gatewayclasses gateways httproutes tcproutes grpcroutes referencegrants; do
      cp "$dir/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$bin/gateway-api/"
    done
    chmod -R u+w "$bin/gateway-api"
    stamp gateway-api "$GATEWAY_API_VERSION"
  fi
fi

if $check; then
  exit "$missing"
fi
say "tools ready in bin/: kubernetes $KUBE_VERSION (and $KUBE_PREVIOUS_VERSION for upgrades), kine $KINE_VERSION, kwok $KWOK_VERSION, helm $HELM_VERSION, controller-gen $cg_version, VictoriaMetrics $observe_version, VictoriaLogs $logs_version, Gateway API $GATEWAY_API_VERSION"
