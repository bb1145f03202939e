#!/usr/bin/env bash
# A real Slurm cluster on one host that behaves like Betzy, for the `slurm` test tier and for trying
# the wrappers on a laptop/workstation (Debian 12/13, as root).
#
#   bash scripts/slurm-local.sh start    # install (apt, once), configure, start; idempotent
#   bash scripts/slurm-local.sh status   # daemons (by PID) and sinfo; exit 0 only when all are up
#   bash scripts/slurm-local.sh stop     # stop every daemon this script started, by PID
#
# Layout (Debian's Slurm 22.05 is built with multiple-slurmd, so each node is its own slurmd with its own
# Port= and its own UTS namespace, i.e. `hostname` inside a job says n1, n2, ...):
#   normal  n1-n4  128 CPUs, 244 GiB each; whole nodes; MinNodes=4; --mem rejected (Lua job_submit)
#   accel   a1-a2  64 CPUs, 4 fake GPUs each (gres File= -> /dev/null symlinks, so CUDA_VISIBLE_DEVICES is
#                  set); GPUs required, --gpus-per-task rejected; --mem allowed
#   preproc p1     128 CPUs, shared; one node per job; --mem allowed
# The nodes claim 128 CPUs (SlurmdParameters=config_overrides) but every job really runs on this host's
# cores. Partition rules here mirror the rules in bind_maps/local.map, which the wrappers check before sbatch.
set -euo pipefail

STATE=/var/lib/slurm-local          # controller state, slurmd spool dirs, fake GPU device files
RUN=/run/slurm-local                # PID files
LOG=/var/log/slurm-local
CONF=/etc/slurm                     # default location, so plain sinfo/sbatch/srun find the cluster
HOSTS_MARK="# slurm-local nodes"
# name:port:partition (accel nodes carry the fake GPUs)
NODES=(n1:17001:normal n2:17002:normal n3:17003:normal n4:17004:normal a1:17011:accel a2:17012:accel
  p1:17021:preproc)

log() { echo "slurm-local: $*" >&2; }

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  command -v unshare >/dev/null || missing+=(util-linux)
  ((${#missing[@]})) || return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  # policy-rc.d style environments refuse to start services from postinst: that is fine, we start
  # the daemons ourselves (by PID) below.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

node_lines() {
  local spec name port part
  for spec in "${NODES[@]}"; do
    IFS=: read -r name port part <<<"$spec"
    case $part in
      accel) echo "NodeName=$name NodeHostname=$name NodeAddr=127.0.0.1 Port=$port CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=32 ThreadsPerCore=1 RealMemory=506000 Gres=gpu:4 State=UNKNOWN" ;;
      *) echo "NodeName=$name NodeHostname=$name NodeAddr=127.0.0.1 Port=$port CPUs=128 Boards=1 SocketsPerBoard=2 CoresPerSocket=64 ThreadsPerCore=1 RealMemory=249856 State=UNKNOWN" ;;
    esac
  done
}

write_config() {
  mkdir -p "$STATE/ctld" "$STATE/gpu" "$RUN" "$LOG" "$CONF"
  local ctl_host
  ctl_host=$(hostname)
  cat >"$CONF/slurm.conf.new" <<EOF
# Written by scripts/slurm-local.sh: a one-host test cluster shaped like Betzy.
ClusterName=local
SlurmctldHost=$ctl_host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
# Nodes claim Betzy's 128 cores / 244 GiB although this host has far fewer.
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
JobSubmitPlugins=lua
# Partition limits are checked at submit time (sbatch -p normal -N2 fails there, not in the queue).
EnforcePartLimits=ALL
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
SchedulerParameters=sched_interval=5,bf_interval=5
$(node_lines)
PartitionName=normal Nodes=n[1-4] Default=YES MinNodes=4 MaxNodes=512 OverSubscribe=EXCLUSIVE DefMemPerCPU=1950 MaxTime=4-00:00:00 State=UP
PartitionName=accel Nodes=a[1-2] DefMemPerCPU=7900 MaxTime=7-00:00:00 State=UP
PartitionName=preproc Nodes=p1 MaxNodes=1 DefMemPerCPU=1950 MaxTime=1-00:00:00 State=UP
EOF
  cat >"$CONF/gres.conf.new" <<EOF
# Fake GPUs: device files are symlinks to /dev/null, enough for Slurm to allocate them and export
# CUDA_VISIBLE_DEVICES / SLURM_GPUS_ON_NODE.
NodeName=a[1-2] Name=gpu File=$STATE/gpu/nvidia[0-3]
EOF
  cat >"$CONF/job_submit.lua.new" <<'EOF'
-- Betzy-like submit rules (bind_maps/local.map holds the same rules, checked before sbatch).
local function part_of(job_desc)
  return job_desc.partition or "normal"
end

local function has_gpu(tres)
  return tres ~= nil and string.find(tres, "gpu") ~= nil
end

function slurm_job_submit(job_desc, part_list, submit_uid)
  local part = part_of(job_desc)
  if part == "normal" then
    local per_node = job_desc.min_mem_per_node
    local per_cpu = job_desc.min_mem_per_cpu
    if (per_node ~= nil and per_node ~= slurm.NO_VAL64) or (per_cpu ~= nil and per_cpu ~= slurm.NO_VAL64) then
      slurm.log_user("partition normal allocates whole nodes: remove --mem/--mem-per-cpu from the job (give memory per step with srun --mem-per-cpu)")
      return slurm.ERROR
    end
  elseif part == "accel" then
    if has_gpu(job_desc.tres_per_task) then
      slurm.log_user("partition accel: --gpus-per-task is not supported; use --gpus or --gpus-per-node")
      return slurm.ERROR
    end
    if not (has_gpu(job_desc.tres_per_job) or has_gpu(job_desc.tres_per_node)) then
      slurm.log_user("partition accel needs GPUs: add --gpus=N or --gpus-per-node=N")
      return slurm.ERROR
    end
  end
  return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  return slurm.SUCCESS
end
EOF
  local f changed=0
  for f in slurm.conf gres.conf job_submit.lua; do
    if cmp -s "$CONF/$f.new" "$CONF/$f"; then rm -f "$CONF/$f.new"; else mv "$CONF/$f.new" "$CONF/$f"; changed=1; fi
  done
  for f in 0 1 2 3; do ln -sfn /dev/null "$STATE/gpu/nvidia$f"; done
  # Node names must resolve (srun, MASTER_ADDR); all nodes are this host.
  local names=()
  for f in "${NODES[@]}"; do names+=("${f%%:*}"); done
  if ! grep -qF "$HOSTS_MARK" /etc/hosts; then
    echo "127.0.0.1 ${names[*]} $HOSTS_MARK" >>/etc/hosts
  fi
  return $((changed == 0 ? 1 : 0))
}

# A PID file names a live daemon only if that PID runs the program the file is named after
# (slurmd-n1.pid -> slurmd) and is no zombie: after a crash, a kill -9 or a reboot, PIDs are reused,
# and a killed daemon nobody reaped yet still answers `kill -0`.
pid_alive() {
  local pid prog
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  prog=$(basename "$1" .pid)
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${prog%%-*}" ] || return 1
  [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

start_munge() {
  local pidfile=/run/munge/munged.pid
  pid_alive "$pidfile" && return 0
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create --keyfile /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  runuser -u munge -- munged --pid-file="$pidfile"
}

wait_for() { # seconds, command...
  local n=$(($1 * 5)); shift
  while ((n-- > 0)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

start() {
  install_packages
  local restart=0
  write_config && restart=1
  if ((restart)) && pid_alive "$RUN/slurmctld.pid"; then
    log "configuration changed: restarting the daemons"
    stop
  fi
  start_munge
  if ! pid_alive "$RUN/slurmctld.pid"; then
    slurmctld
  fi
  wait_for 20 scontrol ping || { log "slurmctld did not answer; see $LOG/slurmctld.log"; exit 3; }
  local spec name
  for spec in "${NODES[@]}"; do
    name=${spec%%:*}
    mkdir -p "$STATE/spool/$name"
    pid_alive "$RUN/slurmd-$name.pid" && continue
    # Own UTS namespace: jobs on this node see `hostname` = the node's name.
    unshare --uts sh -c 'hostname "$1" && exec slurmd -N "$1"' sh "$name"
  done
  # Nodes left DOWN by an earlier stop come back by themselves (ReturnToService=2) once they register.
  if ! wait_for 30 all_idle; then
    scontrol update nodename=ALL state=resume >/dev/null 2>&1 || true
    wait_for 20 all_idle || { log "nodes did not come up:"; sinfo -N >&2; exit 3; }
  fi
  log "up: $(sinfo -h -o '%P=%D' | tr '\n' ' ')"
}

all_idle() {
  local states
  states=$(sinfo -h -N -o '%t' | sort -u | tr '\n' ' ')
  [ "$states" = "idle " ]
}

stop() {
  local pidfile pid
  for pidfile in "$RUN"/slurmd-*.pid "$RUN/slurmctld.pid"; do
    [ -e "$pidfile" ] || continue
    if pid_alive "$pidfile"; then
      pid=$(cat "$pidfile")
      kill "$pid"
      wait_pid_gone "$pid"
    fi
    rm -f "$pidfile"
  done
  log "stopped (munged left running: other tools may use it)"
}

wait_pid_gone() {
  local n=100
  while kill -0 "$1" 2>/dev/null && ((n-- > 0)); do sleep 0.1; done
  kill -0 "$1" 2>/dev/null && kill -9 "$1" 2>/dev/null || true
}

status() {
  local rc=0 pidfile spec name
  for pidfile in "$RUN/slurmctld.pid" $(for spec in "${NODES[@]}"; do echo "$RUN/slurmd-${spec%%:*}.pid"; done); do
    name=$(basename "$pidfile" .pid)
    if pid_alive "$pidfile"; then echo "$name: running (pid $(cat "$pidfile"))"; else echo "$name: stopped"; rc=1; fi
  done
  ((rc == 0)) && sinfo
  return $rc
}

need_root() { [ "$(id -u)" = 0 ] || { log "$1 needs root (it installs packages and runs the daemons)"; exit 3; }; }

case "${1:-}" in
  start) need_root start; start ;;
  stop) need_root stop; stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
