# deps.sh: sourced by the scripts; installs the Debian packages weft needs when missing.
# shellcheck shell=bash

weft_packages=(libboost-fiber1.81-dev libboost-context1.81-dev meson ninja-build pkg-config
               catch2 g++ libbenchmark-dev libspdlog-dev python3 gdb
               libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc cmake)

ensure_packages() {
  local missing=()
  for p in "${weft_packages[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo=(sudo); else
      echo "weft: missing packages ${missing[*]} and no root/sudo to install them" >&2
      return 1
    fi
  fi
  echo "weft: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

# configure DIR OPTIONS...: meson setup, or reconfigure an existing build directory.
configure() {
  local dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}
