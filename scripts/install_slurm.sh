#!/usr/bin/env bash
# Debian's SLURM (slurmctld, slurmd, slurmdbd, clients), munge and MariaDB, for the tests that bring up a
# single-node cluster on localhost (tests/slurm_cluster.py). Needs root and apt; without them it says so
# and leaves the SLURM tests to skip. The packages' own services are not started (no systemd here):
# the tests start their daemons by hand with every file in a temporary directory.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null \
    && command -v munged >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install_slurm.sh: needs root and apt-get; the SLURM tests will be skipped"
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurmdbd slurm-client munge mariadb-server mariadb-client >/dev/null
