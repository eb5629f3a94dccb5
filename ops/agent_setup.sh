#!/usr/bin/env bash
# What a Jenkins agent's admin does ONCE, as root (docs/jenkins.md): nothing else in the pipeline needs root.
#   ops/agent_setup.sh AGENT_USER
#   ops/agent_setup.sh --packages      the Debian packages it installs, one per line (no root needed)
# - Debian packages: docker.io (engine + client), chromium (browser tests), haproxy (rollout test),
#   prometheus (promtool, monitoring tests), prometheus-alertmanager (the retrain webhook route test), debootstrap (the offline base-image stand-in, this machine only),
#   wrk (make bench), docker-registry + skopeo + gnupg (make publish-image / verify-image / test-publish: a real
#   OCI registry on loopback, the push, GPG simple signing; docker-registry's own service is not started)
#   openjdk-17-jre-headless (Spark 4 for make score / make test-spark, and npm-groovy-lint)
# - the agent user, in the docker group (the Docker socket is the only privilege the pipeline uses)
# - a running Docker engine (ops/dockerd.sh; on a normal host, the docker service)
# - the base image python:3.11-slim: pulled where a registry is reachable, else the offline stand-in
set -euo pipefail
packages="docker.io chromium haproxy prometheus prometheus-alertmanager debootstrap wrk docker-registry skopeo gnupg openjdk-17-jre-headless"
if [ "${1:-}" = "--packages" ]; then printf '%s\n' $packages; exit 0; fi
agent="${1:?usage: ops/agent_setup.sh AGENT_USER}"
here="$(cd "$(dirname "$0")" && pwd)"
[ "$(id -u)" = 0 ] || { echo "agent-setup: run as root (an admin's one-time step)" >&2; exit 1; }

missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  echo "agent-setup: apt-get install $(echo $missing)"
  apt-get update -qq
  # policy-rc.d 101: install the packages' programs without starting their system services
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
id "$agent" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$agent"
usermod -aG docker "$agent"
"$here/dockerd.sh" start
if ! docker image inspect python:3.11-slim >/dev/null 2>&1 && ! timeout 120 docker pull python:3.11-slim >/dev/null 2>&1; then
  "$here/standin_base.sh" python:3.11-slim
fi
echo "agent-setup: $agent is ready (docker group, engine up, base image present)"
