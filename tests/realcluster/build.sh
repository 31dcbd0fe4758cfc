#!/usr/bin/env bash
# Builds the real control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kwok) and the upstream JobSet controller from the Go
# modules beside this script, into a cache folder outside the clone keyed
# by what goes into them. A second run with the same key builds nothing.
#
#   tests/realcluster/build.sh                  build what is missing, print progress
#   tests/realcluster/build.sh --print-bin-dir  the same, then print the bin folder last
#
# JOBSET_REALCLUSTER_CACHE overrides the cache root
# (default ~/.cache/jobset-wasm/realcluster).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
print_bin_dir=false
[ "${1:-}" = "--print-bin-dir" ] && print_bin_dir=true

say() { echo "realcluster build: $*" >&2; }

key="$( { cat "$here/versions.env" "$here"/*/go.mod "$here"/*/go.sum "$here"/etcd/main.go; go version; } | sha256sum | cut -c1-16)"
root="${JOBSET_REALCLUSTER_CACHE:-$HOME/.cache/jobset-wasm/realcluster}"
bin="$root/$key/bin"
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok jobset-upstream)

complete=true
for c in "${components[@]}"; do [ -x "$bin/$c" ] || complete=false; done
if $complete; then
  say "cached in $bin (key $key)"
  $print_bin_dir && echo "$bin"
  exit 0
fi

staging="$root/$key/staging.$$"
logs="$root/$key/logs"
mkdir -p "$staging" "$logs"
trap 'rm -rf "$staging"' EXIT
export GOFLAGS="-mod=readonly -trimpath"
export CGO_ENABLED=0

# Version stamps as each project's own build writes them, so that /version
# and the logs report the real versions.
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
k8s_ldflags=""
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  k8s_ldflags+=" -X '$pkg.gitVersion=$K8S_VERSION' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$k8s_minor'"
  k8s_ldflags+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$build_date'"
done
jobset_ldflags="-X 'sigs.k8s.io/jobset/pkg/version.GitVersion=$JOBSET_VERSION'"
kwok_ldflags="-X 'sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION'"

build() { # output module-dir package ldflags
  local out="$1" dir="$2" pkg="$3" flags="$4" start=$SECONDS
  say "building $out ($pkg)"
  if ! (cd "$here/$dir" && go build -ldflags "-s -w $flags" -o "$staging/$out" "$pkg") > "$logs/$out.log" 2>&1; then
    say "FAILED to build $out; the last lines of $logs/$out.log:"
    tail -n 30 "$logs/$out.log" >&2
    exit 1
  fi
  say "built $out in $((SECONDS - start)) s"
}

total=$SECONDS
say "downloading modules"
for d in k8s etcd kwok jobset; do (cd "$here/$d" && go mod download) >> "$logs/download.log" 2>&1 || {
  say "FAILED to download the modules of $d:"; tail -n 30 "$logs/download.log" >&2; exit 1; }
done
say "modules downloaded in $((SECONDS - total)) s"
build etcd etcd . ""
build kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager k8s k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kube-scheduler k8s k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "$kwok_ldflags"
build jobset-upstream jobset sigs.k8s.io/jobset "$jobset_ldflags"

mkdir -p "$bin"
for c in "${components[@]}"; do mv "$staging/$c" "$bin/$c"; done
say "all built in $((SECONDS - total)) s into $bin"
$print_bin_dir && echo "$bin"
exit 0
