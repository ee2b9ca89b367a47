#!/usr/bin/env bash
# Installs the Debian packages softswitch needs, and only those that are missing.
#   scripts/setup-system.sh run    what `make run` needs (Python with venv, espeak-ng for prompts)
#   scripts/setup-system.sh test   plus the real SIP peers the tests drive (sipp, baresip, kamailio, ...)
set -euo pipefail
mode=${1:-run}

pkgs=(espeak-ng sox)
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  pkgs+=(python3 python3-venv python3-pip)
fi
if [ "$mode" = test ] || [ "$mode" = bench ]; then
  pkgs+=(sip-tester kamailio baresip sipsak sipvicious)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them yourself)" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
