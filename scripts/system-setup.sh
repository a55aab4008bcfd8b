#!/usr/bin/env bash
# The Debian packages this project uses outside its virtualenv, installed with apt (root; quiet and no
# apt call at all when everything is installed):
#
#   nginx-light        `squeezenet-mar serve` and the container put nginx in front of MMS
#   apache2-utils      ApacheBench, the benchmarks' load generator
#   prometheus         the metrics test scrapes a real Prometheus server
#   kubernetes-client  `kubectl kustomize` renders deploy/kubernetes in the tests (only when no kubectl
#                      is on PATH: a Google Cloud SDK's kubectl, for one, owns /usr/bin/kubectl)
#
# Podman and the container base image: deploy/container-setup.sh (`make container-setup`).
set -euo pipefail

PACKAGES=(nginx-light apache2-utils prometheus)
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "error: installing ${missing[*]} needs root (run: sudo make system-setup)" >&2
    exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Debian's postinst scripts would start nginx and prometheus as services: this project starts its own.
policy=/usr/sbin/policy-rc.d
cleanup=""
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && cleanup=$policy
fi
trap '[[ -n $cleanup ]] && rm -f "$cleanup"' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
