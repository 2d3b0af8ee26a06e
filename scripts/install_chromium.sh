#!/bin/sh
# Install Debian's chromium (headless use only) for the report's browser test,
# tests/report/test_browser.py.  Idempotent: does nothing when chromium is already installed.
#
#   scripts/install_chromium.sh          # as root, or as a user with sudo
#
# SPDX-License-Identifier: BSD-3-Clause
set -eu

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install_chromium.sh: needs root or sudo to run apt-get" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: apt-get not found (this script is for Debian/Ubuntu)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# No recommends: the browser test needs the browser and a font, not a desktop.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation >/dev/null
echo "installed $(chromium --version 2>/dev/null || echo chromium)"
