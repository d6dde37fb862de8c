#!/usr/bin/env bash
# Install Debian's chromium for tests/test_swagger_ui.py when it is missing. Never downloads a browser build of its own.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_chromium.sh: /usr/bin/chromium is missing and only root can apt-get install it" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# fonts-liberation is a recommended package of chromium; the rest of its recommends are desktop services.
apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
/usr/bin/chromium --version
