#!/usr/bin/env bash
# Installs the real engines the tests run against, from Debian's packages,
# when they are missing: etcd (membership and leases), nats-server
# (transport and JetStream), PostgreSQL 15 and redis-server (the
# contenders of `npm run bench:compare` and its smoke test), and promtool
# (package prometheus: `npm run test:rules` checks and unit-tests the
# alerting rules in deploy/prometheus/), and strace (test/fault/fsync_failure
# injects EIO at the journal's fdatasync with it). Run by `npm test` before anything else, so a
# fresh machine needs nothing but `npm ci && npm test`. A binary that cannot
# be installed is a clear error here, never a skipped test later.
set -euo pipefail

# binary -> Debian package
declare -A PACKAGES=(
  [etcd]=etcd-server
  [nats-server]=nats-server
  [postgres]=postgresql
  [redis-server]=redis-server
  [promtool]=prometheus
  [strace]=strace
)

# Debian keeps PostgreSQL's server binaries off the PATH, under its version.
present() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}

missing=()
for binary in "${!PACKAGES[@]}"; do
  present "$binary" || missing+=("${PACKAGES[$binary]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install_test_deps: missing ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install_test_deps: installing ${missing[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
# The package lists may be absent on a fresh machine; one update is enough.
apt-get update -q >&2 || { echo "install_test_deps: apt-get update failed" >&2; exit 1; }
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || {
  echo "install_test_deps: apt-get install ${missing[*]} failed" >&2
  exit 1
}
for binary in "${!PACKAGES[@]}"; do
  present "$binary" || {
    echo "install_test_deps: ${PACKAGES[$binary]} is installed but $binary is still not found" >&2
    exit 1
  }
done
# Debian's packages enable services; the tests start their own processes on
# free ports, so a packaged etcd left running would only hold port 2379.
# The same for PostgreSQL and Redis: bench:compare starts its own on free ports.
# Only promtool is wanted from the prometheus package: its server would
# scrape and store on port 9090 from every boot, so it is also disabled.
# (In a container without systemd, policy-rc.d usually keeps them all from
# starting in the first place.)
if command -v systemctl >/dev/null 2>&1; then
  for service in etcd postgresql redis-server prometheus; do
    if systemctl is-active --quiet "$service" 2>/dev/null; then systemctl stop "$service" >&2 || true; fi
  done
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then systemctl disable prometheus >/dev/null 2>&1 || true; fi
fi
