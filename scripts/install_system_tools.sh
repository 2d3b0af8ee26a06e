#!/bin/sh
# Install the Debian tools that acceptance tests use, when missing:
#   chromium  - tests/report/test_browser.py renders report.html headless
#   relion    - tests/pipeline/test_run.py checks that RELION reads particles.star
# Idempotent; needs root or sudo.  Without them the tests skip with a reason.
# SPDX-License-Identifier: BSD-3-Clause
set -eu
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium fonts-liberation"
command -v relion_star_handler >/dev/null 2>&1 || missing="$missing relion"
[ -z "$missing" ] && { echo "system tools present"; exit 0; }
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo";
else echo "install_system_tools.sh: needs root or sudo" >&2; exit 1; fi
command -v apt-get >/dev/null 2>&1 || { echo "install_system_tools.sh: no apt-get" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "installed:$missing"
