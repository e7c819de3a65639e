#!/usr/bin/env bash
# Installs the real tools the test suite runs against, from Debian's packages:
#   redis-server   - the app tests start their own redis-server on a free port
#   logrotate      - `logrotate -d` and real rotation runs of the rendered files
#   faketime       - lets the rotation sandbox run logrotate on successive dates
#   libnss-wrapper - resolves the spec's users (su zachot zachot) for logrotate without creating them
#   systemd        - `systemd-analyze verify` / `systemd-analyze security --offline=true`
# Idempotent: does nothing when every tool is already on PATH.
set -euo pipefail

need=()
command -v redis-server   >/dev/null 2>&1 || need+=(redis-server)
command -v logrotate      >/dev/null 2>&1 || need+=(logrotate)
command -v faketime       >/dev/null 2>&1 || need+=(faketime)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
ls /usr/lib/*/libnss_wrapper.so >/dev/null 2>&1 || need+=(libnss-wrapper)
. "$(dirname "$0")/apt-install-missing.sh"
apt_install_missing install-system-deps "${need[@]}"
# Debian starts the packaged redis-server on :6379; the tests start their own and never use it.
