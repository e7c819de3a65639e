#!/usr/bin/env bash
# Installs what the server tests (tests/server/, `pytest -m server`) need on the host, from
# Debian's packages:
#   debootstrap        - builds the Debian 12 root the test server boots from (cached)
#   systemd-container  - systemd-nspawn, which boots that root with systemd as PID 1
#   util-linux         - nsenter, to run commands inside the booted server
# Idempotent: does nothing when every tool is already there. Needs root (or sudo).
set -euo pipefail

need=()
command -v debootstrap     >/dev/null 2>&1 || need+=(debootstrap)
command -v systemd-nspawn  >/dev/null 2>&1 || need+=(systemd-container)
command -v nsenter         >/dev/null 2>&1 || need+=(util-linux)
. "$(dirname "$0")/../apt-install-missing.sh"
apt_install_missing install-host-deps "${need[@]}"
