#!/usr/bin/env bash
# Debian packages the project uses outside Python, installed only when missing and when we are
# allowed to (root, apt-get present); otherwise one line says what to install.
# - libegl1 libegl-mesa0 libgl1: offscreen MuJoCo rendering (MUJOCO_GL=egl, Mesa software).
# - gcc libc6-dev: a C99 compiler; the tests build the C firmware reference (firmware_bridge/c/)
#   and run it against the Python firmware (they skip, saying why, without one).
set -u
need=()
for p in libegl1 libegl-mesa0 libgl1; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ! command -v gcc >/dev/null && ! command -v cc >/dev/null; then
  need+=(gcc libc6-dev)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${need[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}; rendering and the C firmware tests will say what is missing"
else
  echo "note: install with: sudo apt-get install ${need[*]}"
fi
exit 0
