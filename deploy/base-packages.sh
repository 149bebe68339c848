#!/bin/sh
# Install the named packages with the base image's package manager (apt-get: Debian/Ubuntu; dnf or
# microdnf: EL9, UBI 9); nothing when none are named. Used by deploy/Dockerfile in both stages.
set -eu
[ "$#" -gt 0 ] || exit 0
if command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  rm -rf /var/lib/apt/lists/*
elif command -v dnf >/dev/null; then
  dnf install -y -q --setopt=install_weak_deps=False "$@" && dnf clean all
elif command -v microdnf >/dev/null; then
  microdnf install -y --setopt=install_weak_deps=0 "$@" && microdnf clean all
else
  echo "base-packages: no apt-get, dnf or microdnf in the base image to install: $*" >&2
  exit 1
fi
