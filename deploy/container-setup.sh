#!/usr/bin/env bash
# Set up this machine to build and run the image with podman, without Docker or a registry.
#
#   sudo deploy/container-setup.sh            # or: make container-setup
#
# 1. Installs podman and its helpers from Debian with apt (root only). Quiet, and no apt call at
#    all, when everything is already installed.
# 2. Imports the local base image localhost/bookworm-minbase (an `mmdebstrap --variant=minbase
#    bookworm` tree built from the Debian sources this machine's apt uses), unless it exists.
#    REBUILD_BASE=1 rebuilds it. On a machine with a registry, PULL_BASE=1 pulls the official
#    python:3.11-slim-bookworm instead (the Containerfile's default BASE_IMAGE).
#
# 3. Installs deploy/podman/containers.conf as a podman drop-in, /etc/containers/containers.conf.d/
#    50-squeezenet-mar.conf (root only; quiet when unchanged), so that plain `podman run` works as the
#    README writes it: runc, cgroupfs, file events, and ulimits within this machine's hard limits
#    (podman's defaults exceed them: "error setting rlimit type 7"). `make image` and the tests also
#    point CONTAINERS_CONF at the repository's file, which works without the drop-in.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/podman/containers.conf}"
LOCAL_BASE="${LOCAL_BASE:-localhost/bookworm-minbase}"
DEFAULT_BASE="${DEFAULT_BASE:-docker.io/library/python:3.11-slim-bookworm}"
PACKAGES=(podman runc mmdebstrap containernetworking-plugins catatonit uidmap slirp4netns fuse-overlayfs)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: installing ${missing[*]} needs root (run: sudo $0)" >&2
        exit 1
    fi
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        2> >(grep -v "delaying package configuration, since apt-utils" >&2)
fi

# The drop-in: the repository's settings, nofile capped at this machine's hard limit.
DROP_IN=/etc/containers/containers.conf.d/50-squeezenet-mar.conf
hard_nofile=$(ulimit -Hn)
nofile=20000
if [[ $hard_nofile != unlimited ]] && ((hard_nofile < nofile)); then nofile=$hard_nofile; fi
wanted="$(sed "s/nofile=20000:20000/nofile=$nofile:$nofile/" "$HERE/podman/containers.conf")"
if [[ ! -f $DROP_IN || "$(cat "$DROP_IN")" != "$wanted" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: installing $DROP_IN needs root (run: sudo $0)" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$DROP_IN")"
    printf '%s\n' "$wanted" > "$DROP_IN"
    echo "installed $DROP_IN (podman settings for this machine: runc, cgroupfs, ulimits)"
fi

if podman image exists "$LOCAL_BASE" && [[ -z "${REBUILD_BASE:-}" ]]; then
    exit 0
fi
if [[ -n "${PULL_BASE:-}" ]] && timeout 60 podman pull -q "$DEFAULT_BASE" >/dev/null 2>&1; then
    echo "pulled $DEFAULT_BASE: build with it (make image BASE_IMAGE=$DEFAULT_BASE)"
    exit 0
fi

# The Debian sources this machine's apt uses (deb822 or one-line format), else the main mirror.
sources=http://deb.debian.org/debian
for candidate in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [[ -s $candidate ]] && grep -qv '^\s*\(#\|$\)' "$candidate"; then
        sources=$candidate
        break
    fi
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building the base image $LOCAL_BASE with mmdebstrap from $sources (about 20 s, once)"
start=$SECONDS
mmdebstrap --quiet --variant=minbase --format=tar bookworm "$work/base.tar" "$sources"
podman import --quiet "$work/base.tar" "$LOCAL_BASE" >/dev/null
echo "imported $LOCAL_BASE in $((SECONDS - start)) s"
