#!/usr/bin/env bash
# Debian packages for offscreen MuJoCo rendering (MUJOCO_GL=egl, Mesa software).
# Installed only when missing and when we are allowed to (root, apt-get present).
set -u
need=()
for p in libegl1 libegl-mesa0 libgl1; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${need[*]} for offscreen rendering"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}; rendering will say what to install"
else
  echo "note: for offscreen rendering install: sudo apt-get install ${need[*]}"
fi
exit 0
