#!/usr/bin/env bash
# Installs the Debian packages that real nodes need, when they are missing: containerd, runc,
# the CNI plugins, iptables, conntrack and iproute2; and HAProxy, the edge load balancer's data
# plane. It installs them only as root (or with
# sudo); otherwise it names what is missing and the command that installs it, and fails.
#
# usage: hack/deps.sh [--check]   (--check only names what is missing, and exits 1 if anything is)
set -euo pipefail

# command-or-file:package
wanted=(
  containerd:containerd
  runc:runc
  ctr:containerd
  /usr/lib/cni/bridge:containernetworking-plugins
  /usr/lib/cni/host-local:containernetworking-plugins
  /usr/lib/cni/portmap:containernetworking-plugins
  /usr/lib/cni/loopback:containernetworking-plugins
  iptables:iptables
  conntrack:conntrack
  ip:iproute2
  nsenter:util-linux
  haproxy:haproxy
)

missing=()
for w in "${wanted[@]}"; do
  what=${w%%:*} pkg=${w##*:}
  if [[ $what == /* ]]; then [[ -e $what ]] && continue
  else command -v "$what" >/dev/null 2>&1 && continue
  fi
  [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0

if [[ "${1:-}" == "--check" ]]; then
  echo "real nodes and the edge need: ${missing[*]} (apt-get install ${missing[*]})"
  exit 1
fi
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  if ! sudo -n true 2>/dev/null; then
    echo "real nodes need these Debian packages: ${missing[*]}" >&2
    echo "install them as root with: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  sudo_cmd=(sudo -n)
fi
echo "==> apt-get install ${missing[*]} (what real nodes need)"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
