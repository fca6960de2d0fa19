#!/usr/bin/env bash
# Used by .ci/run and by developers; the integration tests in tests/integration/kubernetes use its output.
# Build a real kube-apiserver + kube-controller-manager v1.20.2 from Debian bookworm's
# own source package (apt-get source), with Debian's Go 1.19. No other network needed.
set -euo pipefail
OUT=${K8S_BIN_DIR:-$HOME/.cache/k8s-bin/v1.20.2}
[ -x "$OUT/kube-apiserver" ] && [ -x "$OUT/kube-controller-manager" ] && { echo "cached: $OUT"; exit 0; }
WORK=$(mktemp -d /tmp/k8s-src.XXXX)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends golang-1.19-go etcd-server openssl >/dev/null
# deb-src entries derived from the machine's own Debian source list (no host named here)
sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > /etc/apt/sources.list.d/debian-src.sources
apt-get update -qq
cd "$WORK"
apt-get source --download-only -qq kubernetes=1.20.5+really1.20.2-1.1+deb12u1
tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
cd kubernetes-1.20.2
# reflect2 v1.0.1 (vendored) crashes on Go >= 1.18: give mapiterinit the caller-allocated hiter (as reflect2 v1.0.2 does)
python3 - <<'PY'
p='vendor/github.com/modern-go/reflect2/unsafe_link.go'; s=open(p).read()
s=s.replace("func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer) *hiter","func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)")
s=s.replace("\t// rest fields are ignored\n","\tt, h, buckets, bptr unsafe.Pointer\n\toverflow, oldoverflow *[]unsafe.Pointer\n\tstartBucket uintptr\n\toffset uint8\n\twrapped bool\n\tB, i uint8\n\tbucket, checkBucket uintptr\n")
open(p,'w').write(s)
p='vendor/github.com/modern-go/reflect2/unsafe_map.go'; s=open(p).read()
s=s.replace("\treturn &UnsafeMapIterator{\n\t\thiter:      mapiterinit(type2.rtype, *(*unsafe.Pointer)(obj)),","\tit := new(hiter)\n\tmapiterinit(type2.rtype, *(*unsafe.Pointer)(obj), it)\n\treturn &UnsafeMapIterator{\n\t\thiter:      it,")
open(p,'w').write(s)
PY
grep -q 'it \*hiter)' vendor/github.com/modern-go/reflect2/unsafe_link.go
# go >= 1.16 turned an always-false zero-value check into "\"\" is null" for CRD validation (kubernetes#99804, kube-openapi#230)
sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' \
  vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go vendor/github.com/go-openapi/validate/type.go
grep -q 'if data == nil {$' vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go
printf 'KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56\nKUBE_GIT_TREE_STATE=clean\nKUBE_GIT_VERSION=v1.20.2\nKUBE_GIT_MAJOR=1\nKUBE_GIT_MINOR=20\n' > ../version.env
env -u GOPATH PATH=/usr/lib/go-1.19/bin:$PATH CGO_ENABLED=0 GOPROXY=off GOFLAGS=-p=2 \
  KUBE_GIT_VERSION_FILE=$WORK/version.env GOCACHE=$WORK/gocache \
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" KUBE_BUILD_PLATFORMS=linux/amd64 GOLDFLAGS="-s -w" >"$WORK/build.log" 2>&1 \
  || { tail -40 "$WORK/build.log"; exit 1; }
mkdir -p "$OUT"; cp _output/bin/kube-apiserver _output/bin/kube-controller-manager "$OUT/"
cd /; rm -rf "$WORK"
"$OUT/kube-apiserver" --version
