#!/usr/bin/env bash
# Installs the Debian 12 packages framelane needs to build, run and test.
# Idempotent: packages already present are skipped; safe to run again.
set -euo pipefail

PACKAGES=(
  # Qt 6 + QML runtime
  qt6-base-dev qt6-base-dev-tools qt6-declarative-dev qt6-declarative-dev-tools
  qml6-module-qtquick qml6-module-qtquick-window qml6-module-qtquick-controls
  qml6-module-qtquick-layouts qml6-module-qtquick-templates qml6-module-qtqml
  qml6-module-qtqml-models qml6-module-qtqml-workerscript qt6-qpa-plugins libqt6opengl6-dev
  # headless display for tests and for running without a desktop; xdotool presses keys and
  # touches buttons in the window under test (real X input events)
  xvfb xauth libgl1-mesa-dri libegl-mesa0 libglx-mesa0 fonts-dejavu-core xdotool
  # toolchain pieces: cxx-qt links with lld; pkg-config finds Qt
  lld pkg-config g++ make
  # gRPC code generation (protoc and the well-known .proto files)
  protobuf-compiler libprotobuf-dev
  # video encoding and replay: FFmpeg 5.1 libraries (ffmpeg-next binds them with
  # bindgen, hence clang), and the ffmpeg tool the encode benchmark compares against
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev libavdevice-dev
  clang libclang-dev ffmpeg
  # episode analysis: OpenCV 4.6 for face detection (the opencv crate binds it with libclang)
  # and the Haar cascades of opencv-data
  libopencv-dev opencv-data
  # test helpers; a real Prometheus server scrapes the daemon's metrics endpoint in the tests
  python3 prometheus
  # the Python SDK's tests run in a virtual environment
  python3-venv
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Test data: a public-domain face photograph (NASA's astronaut portrait that scikit-image ships)
# for the episode-analysis tests. Only that file is taken out of Debian's python3-skimage
# package; the package itself (and its dependencies) is not installed.
fetch_face_image() {
  local dest="${XDG_CACHE_HOME:-$HOME/.cache}/framelane/testdata/astronaut.png"
  [ -s "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")"
  local tmp
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download python3-skimage >/dev/null 2>&1); then
    dpkg-deb --fsys-tarfile "$tmp"/python3-skimage_*.deb \
      | tar -xO ./usr/lib/python3/dist-packages/skimage/data/astronaut.png > "$dest.part" \
      && mv "$dest.part" "$dest" && echo "setup: face test image at $dest"
  else
    echo "setup: could not download python3-skimage for the face test image" >&2
  fi
  rm -rf "$tmp"
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} system packages are present"
  fetch_face_image
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "setup: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
APT_OPTS=(-o DPkg::Lock::Timeout=600 -y --no-install-recommends)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get "${APT_OPTS[@]}" install -qq "${missing[@]}"
fetch_face_image
echo "setup: done"
