#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the SLURM tests and for trying docs/sweeps.md:
# munge + slurmctld + slurmd on localhost, one partition ("local") with every CPU of the machine.
#
#   scripts/local-slurm.sh start    install the Debian packages if missing, write the config, start, wait
#                                   until the node is idle (idempotent: a running cluster is left as it is)
#   scripts/local-slurm.sh stop     stop the three daemons (by their pid files)
#   scripts/local-slurm.sh status   sinfo, or "not running"
#
# Needs root (the daemons and apt-get; CI runs as root). Debian/Ubuntu only. Made for containers: no
# systemd, no cgroups (processes are tracked through /proc), no accounting database (finished jobs stay
# visible to squeue/scontrol for MinJobAge seconds).
# Jobs run at nice LYCOBENCH_SLURM_NICE (default 19): slurmd starts at that nice value and its jobs
# inherit it, so a test sweep never starves other work on a shared machine.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by lycobench scripts/local-slurm.sh"
LOGS=/var/log/slurm
STATE=/var/lib/slurm
NICE=${LYCOBENCH_SLURM_NICE:-19}

need_root() {
  [ "$(id -u)" -eq 0 ] || { echo "local-slurm: run as root (e.g. sudo $0 $1)" >&2; exit 1; }
}

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return
  command -v apt-get >/dev/null || { echo "local-slurm: no apt-get: install SLURM and munge yourself" >&2; exit 1; }
  echo "local-slurm: installing slurmctld slurmd slurm-client munge (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "local-slurm: $CONF exists and was not written by this script: leaving it (and the cluster) alone" >&2
    exit 1
  fi
  local host node
  host=$(hostname -s)
  # The node's CPUs, sockets and memory as slurmd detects them (first line of `slurmd -C`).
  node=$(slurmd -C | head -n 1)
  mkdir -p "$LOGS" "$STATE/slurmctld" "$STATE/slurmd" /etc/slurm
  local text
  text="$MARK: a single-node cluster on localhost
ClusterName=lycobench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again after this many seconds (default 120)
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# containers: no cgroups, no accounting daemon
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
# look at pending jobs (a requeued one, say) every 5 s rather than every minute
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# a requeued or cancelled job gets SIGTERM, then SIGKILL this many seconds later
KillWait=5
# finished jobs stay visible to squeue and scontrol this long (there is no sacct here)
MinJobAge=900
SlurmctldTimeout=30
SlurmdTimeout=30
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
  if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$text" ]; then
    printf '%s\n' "$text" >"$CONF"
    CHANGED=1
  fi
}
CHANGED=0

alive() {  # alive <pidfile>
  local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

start() {
  need_root start
  install_packages
  write_config
  mkdir -p /run/munge && chown munge:munge /run/munge
  alive /run/munge/munged.pid || runuser -u munge -- munged
  alive /run/slurmctld.pid || slurmctld
  alive /run/slurmd.pid || nice -n "$NICE" slurmd
  # daemons that were already running read a changed configuration now
  [ "$CHANGED" -eq 0 ] || scontrol reconfigure >/dev/null 2>&1 || true
  local state=""
  for _ in $(seq 1 90); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -n 1 || true)
    case "$state" in
      idle|mixed|allocated|completing) echo "local-slurm: up (node $(hostname -s): $state, partition local)"; return 0 ;;
      down*|drain*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  echo "local-slurm: the node did not become idle within 90 s (state: ${state:-none}); see $LOGS/*.log" >&2
  exit 1
}

stop() {
  need_root stop
  local f
  for f in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
    if alive "$f"; then
      kill "$(cat "$f")"
      for _ in $(seq 1 30); do alive "$f" || break; sleep 0.5; done
    fi
  done
  echo "local-slurm: stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if command -v sinfo >/dev/null && sinfo >/dev/null 2>&1; then sinfo; else echo "local-slurm: not running"; exit 3; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
