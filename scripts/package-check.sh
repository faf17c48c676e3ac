#!/usr/bin/env bash
# Installs the .deb with apt into a clean Debian 12 root that holds nothing of the build (a
# fresh debootstrap, cached as a pristine tarball between runs), then runs there:
# `framelane --smoke-test` offscreen (every QML module and plugin it needs must come from the
# package's dependencies) and `framelane serve` answering `framelane health`.
# Needs root (chroot, mounts) and the Debian mirror. Builds the package first if there is none.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
if [ "$(id -u)" -ne 0 ]; then
  echo "package-check: needs root (chroot and mounts); try: sudo $0" >&2
  exit 1
fi
deb=$(ls -t target/debian/framelane_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  ./scripts/package.sh
  deb=$(ls -t target/debian/framelane_*.deb | head -1)
fi
command -v debootstrap >/dev/null 2>&1 || apt-get install -y --no-install-recommends debootstrap
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${FRAMELANE_CLEAN_ROOT_CACHE:-/var/tmp/framelane-bookworm-minbase.tar}
root=$(mktemp -d /var/tmp/framelane-clean-root.XXXXXX)
chmod 755 "$root"
cleanup() {
  for m in dev/shm dev/pts dev proc sys; do
    mountpoint -q "$root/$m" && umount -l "$root/$m" || true
  done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
if [ ! -s "$cache" ]; then
  echo "package-check: debootstrap bookworm (minbase) from $mirror"
  tmp=$(mktemp -d /var/tmp/framelane-debootstrap.XXXXXX)
  debootstrap --variant=minbase bookworm "$tmp" "$mirror" >/dev/null
  tar -C "$tmp" -cf "$cache.part" . && mv "$cache.part" "$cache"
  rm -rf --one-file-system "$tmp"
fi
tar -C "$root" -xf "$cache"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
cp "$deb" "$root/tmp/"
name=$(basename "$deb")
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
echo "package-check: installing $name with apt into a clean root"
in_root apt-get -o APT::Sandbox::User=root update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get -o APT::Sandbox::User=root install -y -qq --no-install-recommends "/tmp/$name" >/dev/null
in_root dpkg -s framelane | grep -E '^(Version|Installed-Size):'
echo "package-check: framelane --smoke-test (offscreen)"
in_root sh -c 'mkdir -m 700 -p /tmp/xdg && QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR=/tmp/xdg framelane --smoke-test'
echo "package-check: framelane serve + framelane health"
in_root sh -c '
  framelane serve --listen 127.0.0.1:0 --data-dir /tmp/data > /tmp/serve.out 2>/tmp/serve.err &
  pid=$!
  for i in $(seq 1 100); do
    addr=$(sed -n "s/.*listening on \([0-9.:]*\).*/\1/p" /tmp/serve.out)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat /tmp/serve.err; exit 1; }
  framelane health --target "$addr" | head -c 200; echo
  kill -TERM $pid; wait $pid
'
echo "package-check: passed in $(( $(date +%s) - start )) s"
