#!/usr/bin/env bash
# Install Debian's haproxy for tests/test_cluster.py when it is missing. The test writes its own configuration and
# runs its own haproxy process; the packaged service and /etc/haproxy/haproxy.cfg are not used.
set -euo pipefail
if [ -x /usr/sbin/haproxy ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_haproxy.sh: /usr/sbin/haproxy is missing and only root can apt-get install it" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends haproxy >/dev/null
/usr/sbin/haproxy -v | head -n 1
