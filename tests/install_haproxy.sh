#!/usr/bin/env bash
# Install Debian's haproxy for tests/test_cluster.py when it is missing. The test writes its own configuration and
# runs its own haproxy process; the packaged service and /etc/haproxy/haproxy.cfg are not used.
# HAPROXY (the binary to look for) and APT_GET (the installer) are settable so that tests/test_installers.py can
# rehearse a first run with stand-ins, without uninstalling anything.
set -euo pipefail
haproxy=${HAPROXY:-/usr/sbin/haproxy}
apt_get=${APT_GET:-apt-get}
if [ -x "$haproxy" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    # Not a failure here: outside CI the cluster tests skip themselves; under CI they fail, naming the missing binary.
    echo "install_haproxy.sh: $haproxy is missing and only root can apt-get install it" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
"$apt_get" update -qq
"$apt_get" install -y -qq --no-install-recommends haproxy >/dev/null
if [ ! -x "$haproxy" ]; then
    echo "install_haproxy.sh: apt-get installed haproxy, but $haproxy is still missing" >&2
    exit 1
fi
# The whole output is read before its first line is printed: `haproxy -v | head -n 1` lets head exit early, and
# haproxy then dies of SIGPIPE (141), which pipefail makes this script's status.
version=$("$haproxy" -v)
echo "${version%%$'\n'*}"
