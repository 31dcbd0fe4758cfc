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

export GOFLAGS="-mod=readonly -trimpath"
export CGO_ENABLED=0

# Version stamps as each project's own release build writes them, so that
# /version and the logs report the real versions. Kubernetes' stamps follow
# hack/lib/version.sh (its buildDate is the release's own date, read from
# the module proxy below, so that two builds give the same binaries); no
# git commit is known from a module, so gitCommit and gitTreeState are left
# out as that script does without one. kwok's follow hack/releases.sh,
# JobSet's its Makefile (GitVersion only, for the same reason).
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
k8s_stamps() { # build-date
  local pkg flags=""
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    flags+=" -X '$pkg.gitVersion=$K8S_VERSION' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$k8s_minor'"
    flags+=" -X '$pkg.buildDate=$1'"
  done
  echo "$flags"
}
jobset_ldflags="-X 'sigs.k8s.io/jobset/pkg/version.GitVersion=$JOBSET_VERSION'"
kwok_ldflags="-X 'sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION'"

# The key covers everything that goes into the binaries: the pinned
# versions, the modules, the Go toolchain and the build flags.
# Kueue is built under a key of its own (below), so that pinning another
# Kueue leaves the plane's binaries cached.
plane_modules=(etcd jobset k8s kwok)
key="$( { grep -v '^KUEUE_' "$here/versions.env"
  for d in "${plane_modules[@]}"; do cat "$here/$d/go.mod"; done
  for d in "${plane_modules[@]}"; do cat "$here/$d/go.sum"; done
  cat "$here"/etcd/main.go; go version
  echo "$GOFLAGS $CGO_ENABLED $(k8s_stamps DATE) $jobset_ldflags $kwok_ldflags"; } | sha256sum | cut -c1-16)"
kueue_ldflags="-X 'sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION'"
kueue_key="$( { echo "KUEUE_VERSION=$KUEUE_VERSION"; cat "$here/kueue/go.mod" "$here/kueue/go.sum"; go version
  echo "$GOFLAGS $CGO_ENABLED $kueue_ldflags"; } | sha256sum | cut -c1-16)"
root="${JOBSET_REALCLUSTER_CACHE:-$HOME/.cache/jobset-wasm/realcluster}"
bin="$root/$key/bin"
kueue_bin="$root/kueue-$kueue_key/bin"
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok jobset-upstream)

plane_cached() {
  local c
  for c in "${components[@]}"; do [ -x "$bin/$c" ] || return 1; done
  [ -f "$bin/jobset-upstream-crd.yaml" ]
}
kueue_cached() {
  [ -x "$kueue_bin/kueue" ] && [ -f "$kueue_bin/kueue-crds.yaml" ] && [ -f "$kueue_bin/kueue-webhooks.yaml" ]
}
cached() { plane_cached && kueue_cached; }
done_cached() {
  # Kueue is found beside the plane's binaries.
  for f in kueue kueue-crds.yaml kueue-webhooks.yaml; do ln -sfn "$kueue_bin/$f" "$bin/$f"; done
  say "cached in $bin (key $key; Kueue key $kueue_key)"
  if $print_bin_dir; then echo "$bin"; fi
  exit 0
}
cached && done_cached

# One build per key at a time: a second caller waits for the first and
# then finds its binaries.
mkdir -p "$root"
exec 9>"$root/$key.lock"
if ! flock -n 9; then
  say "another build of $key is running; waiting for it"
  flock 9
fi
cached && done_cached

staging="$root/$key/staging.$$"
logs="$root/$key/logs"
# The module and build caches of this build live beside it and go when it
# ends: once the binaries are cached they are never used again, and they
# take about 6 GB.
work="$root/$key/work.$$"
mkdir -p "$staging" "$logs" "$work"
cleanup() {
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$staging" "$work"
}
trap cleanup EXIT
export GOMODCACHE="$work/mod" GOCACHE="$work/build"

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
download() { # module-dir...
  local d start=$SECONDS
  say "downloading modules"
  for d in "$@"; do (cd "$here/$d" && go mod download) >> "$logs/download.log" 2>&1 || {
    say "FAILED to download the modules of $d:"; tail -n 30 "$logs/download.log" >&2; exit 1; }
  done
  say "modules downloaded in $((SECONDS - start)) s"
}
: > "$logs/download.log"

if ! kueue_cached; then
  # Kueue, its CRDs and its webhook configurations, into a folder of its
  # own that also appears whole or not at all.
  download kueue
  build kueue kueue sigs.k8s.io/kueue/cmd/kueue "$kueue_ldflags"
  kdir="$(cd "$here/kueue" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)"
  cat "$kdir"/config/components/crd/bases/*.yaml > "$staging/kueue-crds.yaml"
  cp "$kdir/config/components/webhook/manifests.yaml" "$staging/kueue-webhooks.yaml"
  mkdir -p "$(dirname "$kueue_bin")"
  rm -rf "$kueue_bin"
  mv "$staging" "$kueue_bin"
  mkdir -p "$staging"
fi
plane_cached && done_cached

download "${plane_modules[@]}"
release_date="$(cd "$here/k8s" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
k8s_ldflags="$(k8s_stamps "$release_date")"
build etcd etcd . ""
build kube-apiserver k8s k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager k8s k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kube-scheduler k8s k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "$kwok_ldflags"
build jobset-upstream jobset sigs.k8s.io/jobset "$jobset_ldflags"

# Upstream's CRD, for installing the upstream controller beside its binary.
crd="$(cd "$here/jobset" && go list -m -f '{{.Dir}}' sigs.k8s.io/jobset)/config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml"
cp "$crd" "$staging/jobset-upstream-crd.yaml"
# The bin folder appears whole or not at all.
rm -rf "$bin"
mv "$staging" "$bin"
say "all built in $((SECONDS - total)) s into $bin"
done_cached
