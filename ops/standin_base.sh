#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim when no registry can be reached (the bentofile stays the
# production one): Debian bookworm ships Python 3.11. Used by ops/image.py only after a real pull fails.
set -euo pipefail
image="${1:-python:3.11-slim}"
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
echo "standin: debootstrap bookworm (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,curl bookworm "$rootfs" >/dev/null
rm -f "$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED
# pip inside the build only trusts PyPI through the host's CA bundle on this machine.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs"/etc/ssl/certs/ca-certificates.crt
ln -sf /usr/bin/python3 "$rootfs"/usr/local/bin/python
ln -sf /usr/bin/pip3 "$rootfs"/usr/local/bin/pip
tar -C "$rootfs" -c . | docker import \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV UV_NATIVE_TLS=1' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'LABEL org.opencontainers.image.description="stand-in for python:3.11-slim, built offline from Debian bookworm"' \
  - "$image" >/dev/null
echo "standin: tagged $image"
