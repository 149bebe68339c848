#!/usr/bin/env bash
# Build a local Debian bookworm base image with python3, pip and venv, for hosts
# that cannot pull python:3.11-slim (no registry reachable). Uses the Debian
# mirror apt already uses on this machine. Usage: deploy/make-base-image.sh [TAG]
set -euo pipefail
tag="${1:-vobox-agent-base:bookworm}"
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # first "URIs:" (deb822) or "deb URL bookworm" line of apt's configured sources
  shopt -s nullglob
  mirror=$( { grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list || true; } \
    | grep -E 'debian/?$|debian ' | grep -v security | head -n1 \
    | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//; s/[[:space:]].*$//')
fi
: "${mirror:?no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR}"
command -v debootstrap >/dev/null || { echo "make-base-image: apt-get install debootstrap" >&2; exit 1; }
root=$(mktemp -d /var/tmp/vobox-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "make-base-image: debootstrap bookworm from $mirror into $root" >&2
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  bookworm "$root" "$mirror" >&2
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  -c 'CMD ["python3"]' - "$tag" >&2
echo "$tag"
