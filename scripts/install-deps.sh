#!/bin/sh
# Installs the Debian packages the build needs, only those missing.
# Called by `make` when a required header is absent; safe to run by hand.
set -e
pkgs="libdnnl-dev libcmocka-dev libcjson-dev libpng-dev libjpeg-dev libstb-dev libsentencepiece-dev libwebp-dev libavcodec-dev libavformat-dev libavutil-dev libswscale-dev pkg-config clang libclang-rt-14-dev"
# clang and its runtime (libclang-rt-14-dev) build the libFuzzer harnesses of `make fuzz`.
missing=""
for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
