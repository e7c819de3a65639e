# Sourced by the install scripts: apt_install_missing NAME PKG... installs the Debian
# packages collected in the array `need` (nothing when it is empty), with sudo when not root.
apt_install_missing() {
  local name=$1
  shift
  [ $# -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "$name: installing $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
