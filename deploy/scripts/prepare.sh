#!/bin/sh
# prepare.sh: everything the compose stack needs on a machine that reaches no container
# registry, each step skipped when its result is already there (so CI pays once per run):
#   1. the base image docker.io/library/debian:bookworm-slim, made with debootstrap
#      (skipped if the image exists, e.g. pulled from a registry);
#   2. deploy/wheelhouse/: the project's dependencies as wheels, downloaded on the host
#      (whose pip is configured for the package index) — the build needs no network for pip;
#   3. the images localhost/deltaml:dev (Containerfile), localhost/deltaml-chain:dev (anvil,
#      copied from node_modules — `npm ci` installs it — behind its TLS front) and
#      localhost/deltaml-postgres:dev.
# Needs: podman (with runc), debootstrap, python3 -m pip, npm's anvil. Times each step.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
: "${CONTAINERS_CONF:=$root/deploy/containers.conf}"
export CONTAINERS_CONF
engine=${DELTAML_ENGINE:-podman}
base=docker.io/library/debian:bookworm-slim
# The Debian mirror this machine's apt uses (or DEBIAN_MIRROR).
mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | sed -n -e 's/^URIs: *\([^ ]*\).*/\1/p' -e 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) .*/\2/p' \
    | grep -v security | head -n 1)}
step() { echo "== prepare: $1"; }
now() { date +%s; }

base_image() {
    t=$(now)
    rootfs=$(mktemp -d /var/tmp/deltaml-rootfs.XXXXXX)
    nice -n 19 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    # What debian:bookworm-slim leaves out: package lists, caches, docs, manuals, locales.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | $engine import --change 'CMD ["bash"]' - "$base" >/dev/null
    rm -rf "$rootfs"
    echo "   base image: $(( $(now) - t )) s"
}

wheelhouse() {
    t=$(now)
    # The image's Python is Debian bookworm's 3.11: the host's pip must pick wheels for it.
    python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
        echo "prepare.sh: the wheelhouse needs python3 3.11 on the host (bookworm's)" >&2
        exit 1
    }
    find deploy/wheelhouse -name "*.whl" -delete
    # The project's dependencies (from pyproject.toml) and the build tools, as wheels; the
    # image builds the project itself from its sources.
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > deploy/wheelhouse/requirements.txt
    nice -n 19 python3 -m pip wheel --quiet --disable-pip-version-check -w deploy/wheelhouse \
        -r deploy/wheelhouse/requirements.txt "setuptools>=68" wheel 2>/dev/null
    touch deploy/wheelhouse/.complete
    echo "   wheelhouse: $(( $(now) - t )) s"
}

# Both mostly wait on the network: side by side.
pids=""
if ! $engine image exists "$base" 2>/dev/null; then
    step "base image $base from debootstrap ($mirror)"
    base_image &
    pids="$pids $!"
fi
if [ ! -e deploy/wheelhouse/.complete ] || [ pyproject.toml -nt deploy/wheelhouse/.complete ]; then
    step "wheelhouse (deploy/wheelhouse)"
    wheelhouse &
    pids="$pids $!"
fi
for pid in $pids; do wait "$pid"; done

t=$(now)
step "image localhost/deltaml:dev"
nice -n 19 $engine build --quiet --format docker -f Containerfile -t localhost/deltaml:dev . >/dev/null
echo "   $(( $(now) - t )) s"
t=$(now)
step "image localhost/deltaml-chain:dev"
anvil=${DELTAML_ANVIL_BIN:-node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil}
[ -x "$anvil" ] || { echo "prepare.sh: no anvil at $anvil (npm ci, or set DELTAML_ANVIL_BIN)" >&2; exit 1; }
cmp -s "$anvil" deploy/chain/anvil || cp "$anvil" deploy/chain/anvil
nice -n 19 $engine build --quiet --format docker -f deploy/chain/Containerfile \
    -t localhost/deltaml-chain:dev deploy/chain >/dev/null
echo "   $(( $(now) - t )) s"
t=$(now)
step "image localhost/deltaml-postgres:dev"
nice -n 19 $engine build --quiet --format docker -f deploy/postgres/Containerfile \
    -t localhost/deltaml-postgres:dev deploy/postgres >/dev/null
echo "   $(( $(now) - t )) s"
$engine images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^localhost/deltaml' || true
