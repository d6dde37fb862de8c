#!/usr/bin/env bash
# Install Debian's chromium for the browser tests when it is missing. Never downloads a browser build of its own.
# CHROMIUM (the binary to look for) and APT_GET (the installer) are settable so that tests/test_installers.py can
# rehearse a first run with stand-ins, without uninstalling anything.
set -euo pipefail
chromium=${CHROMIUM:-/usr/bin/chromium}
apt_get=${APT_GET:-apt-get}
if [ -x "$chromium" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    # Not a failure here: outside CI the browser tests skip themselves; under CI they fail, naming the missing binary.
    echo "install_chromium.sh: $chromium is missing and only root can apt-get install it" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
"$apt_get" update -qq
# fonts-liberation is a recommended package of chromium; the rest of its recommends are desktop services.
"$apt_get" install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
if [ ! -x "$chromium" ]; then
    echo "install_chromium.sh: apt-get installed chromium, but $chromium is still missing" >&2
    exit 1
fi
# Read whole, then the first line printed, for the same reason as in install_haproxy.sh: no early reader in a pipe.
version=$("$chromium" --version)
echo "${version%%$'\n'*}"
