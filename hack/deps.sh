#!/usr/bin/env bash
# Installs the Debian packages that real nodes need, when they are missing: containerd, runc,
# the CNI plugins, iptables, conntrack and iproute2; HAProxy, the edge load balancer's data
# plane; and Debian's package lists, of which the catalog's images are made. It installs them
# only as root (or with sudo); otherwise it names what is missing and the command that installs
# it, and fails.
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
# The catalog's images are made of Debian packages (apt-cache depends, apt-get download): they
# need the package lists, which a freshly made machine may have deleted.
lists=no
compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null && lists=yes
((${#missing[@]} == 0)) && [[ $lists == yes ]] && exit 0

if [[ "${1:-}" == "--check" ]]; then
  ((${#missing[@]})) && echo "real nodes and the edge need: ${missing[*]} (apt-get install ${missing[*]})"
  [[ $lists == yes ]] || echo "the catalog's images need Debian's package lists (apt-get update)"
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
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
((${#missing[@]} == 0)) && exit 0
echo "==> apt-get install ${missing[*]} (what real nodes need)"
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
