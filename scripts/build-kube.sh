#!/usr/bin/env bash
# Builds the tests' Kubernetes API server from source: kube-apiserver (k8s.io/kubernetes
# v1.34.3) and etcd (the etcd server that release depends on, through its embed package),
# both from the Go module in stack/go, through the Go module proxy. Everything goes to
# .cache/kube: the module cache (gopath/), the build cache (dropped once both binaries are
# built) and the binaries (bin/). `make setup` runs this once; the marker .complete,
# newer than the module's files, makes later runs skip it (and holds the digest of the
# inputs, so that a newer but unchanged file costs no rebuild).
#
# Needs Go >= 1.24 (`go` on PATH or /usr/local/go/bin/go). From empty caches the build
# took 20 minutes on a 2-core machine shared with other test runs (about 7 minutes of CPU
# time; see docs/deployment.md, "Kubernetes"); the module downloads are about 600 MB.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${CSEP_CACHE_DIR:-$root/.cache}/kube
go=$(command -v go || true)
[ -n "$go" ] || go=/usr/local/go/bin/go
if [ ! -x "$go" ]; then
  echo "build-kube: no Go toolchain (go on PATH or /usr/local/go/bin/go); Go >= 1.24 is needed" >&2
  exit 1
fi

export GOPATH=$out/gopath GOMODCACHE=$out/gopath/pkg/mod GOCACHE=$out/gocache
# The module cache stays deletable with rm -rf; no module is fetched straight from VCS;
# the binaries carry no stamp of this checkout's git state.
export GOFLAGS="-modcacherw -buildvcs=false" GOPROXY=${GOPROXY:-https://proxy.golang.org}

cd "$root/stack/go"
# Only what the tests run; no symbols or local paths in the binaries; the version the
# server reports (/version) is the release's, as in Kubernetes' own builds.
version=$(sed -n 's#^\s*k8s.io/kubernetes \(v[0-9.]*\).*#\1#p' go.mod)
minor=${version#v1.}
minor=${minor%%.*}
flags=(-trimpath "-ldflags=-s -w -X k8s.io/component-base/version.gitVersion=$version \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor")

# The marker holds a digest of what the binaries are built from: when make runs this
# because a file is newer but nothing that matters changed, nothing is rebuilt.
inputs=$(cat go.mod go.sum etcd/*.go; echo "${flags[*]}"; "$go" env GOVERSION)
digest=$(printf '%s' "$inputs" | sha256sum | cut -d' ' -f1)
if [ -x "$out/bin/etcd" ] && [ -x "$out/bin/kube-apiserver" ] \
   && [ "$(cat "$out/.complete" 2>/dev/null)" = "$digest" ]; then
  touch "$out/.complete"
  exit 0
fi
mkdir -p "$out/bin"
rm -f "$out/.complete"

start=$(date +%s)
"$go" build -trimpath -ldflags="-s -w" -o "$out/bin/etcd" ./etcd
"$go" build "${flags[@]}" -o "$out/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
"$out/bin/kube-apiserver" --version
echo "build-kube: built etcd and kube-apiserver in $(( $(date +%s) - start )) s"

"$go" clean -cache
rm -rf "$out/gocache"
echo "$digest" > "$out/.complete"
