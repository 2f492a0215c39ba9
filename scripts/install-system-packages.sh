#!/usr/bin/env bash
# Install the Debian packages listed in scripts/system-packages.txt that are not installed yet.
# Runs on a fresh CI box or station PC as root; without root or apt it says what is missing and
# stops with an error, so a test that needs the package never silently skips.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/system-packages.txt" | grep -v '^$' || true)
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages for the real-component tests: ${missing[*]}"
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "cannot install ${missing[*]}: run 'sudo apt-get install ${missing[*]}' (Debian 12) and retry" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
