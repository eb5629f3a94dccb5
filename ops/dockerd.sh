#!/usr/bin/env bash
# Start or stop a Docker engine for this project on a machine that has none running (CI, a fresh VM).
# Networking rule of the build machine: no bridge, host networking only, loopback traffic only.
#   ops/dockerd.sh start   installs docker.io if needed, starts dockerd, records its pid
#   ops/dockerd.sh stop    stops the dockerd that `start` started (by that pid), nothing else
set -euo pipefail
state_dir="${DOCKERD_STATE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.dockerd}"
pid_file="$state_dir/dockerd.pid"

case "${1:-}" in
  start)
    if docker info >/dev/null 2>&1; then
      echo "dockerd: an engine is already running; using it"
      exit 0
    fi
    if ! command -v dockerd >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    fi
    mkdir -p "$state_dir"
    dockerd --bridge=none --iptables=false --ip-masq=false >"$state_dir/dockerd.log" 2>&1 &
    echo $! >"$pid_file"
    for _ in $(seq 60); do
      docker info >/dev/null 2>&1 && { echo "dockerd: started (pid $(cat "$pid_file"))"; exit 0; }
      sleep 1
    done
    echo "dockerd: did not come up in 60 s; see $state_dir/dockerd.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$pid_file" ]; then
      pid=$(cat "$pid_file")
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        echo "dockerd: stopped (pid $pid)"
      fi
      rm -f "$pid_file"
    else
      echo "dockerd: this project did not start one; nothing to stop"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
