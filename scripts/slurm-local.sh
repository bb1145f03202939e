#!/usr/bin/env bash
# A real Slurm cluster on one host, as strict as Betzy, for the `slurm` test tier and for trying the
# wrappers on a laptop/workstation (Debian 12/13, as root).
#
#   bash scripts/slurm-local.sh start    # install (apt, once), configure, start; idempotent
#   bash scripts/slurm-local.sh status   # daemons (by PID) and sinfo; exit 0 only when all are up
#   bash scripts/slurm-local.sh stop     # stop every daemon this script started, by PID
#
# GENERATED FROM THE PROFILE profiles/local.profile (SLURM_LOCAL_PROFILE names another), read by the one
# reader the wrappers use (slurm/common.sh): its `node` lines make the nodes, its `rule` lines the
# partitions (node counts, time limits, default memory), the QOS limits (per-user nodes, running jobs,
# CPUs) and the Lua submit checks (account, time, memory, GPUs), its `cluster` lines the account and
# the unprivileged user the jobs run as. So the cluster refuses what the wrappers' rule check refuses.
#
# What is strict here, as on Betzy (each shown by a test in tests/slurm/test_strict_cluster.py):
#   - node shape: Slurm counts hyperthreads (normal/preproc: 2 sockets x 64 cores x 2 threads = 256
#     CPUs, 244 GiB; accel: 128 CPUs, 494.5 GiB, 4 GPUs); DefMemPerCPU = node memory / CPUs, so a
#     step that asks -c <all CPUs> --mem-per-cpu=<Betzy's 1950M> can never start (--mem=0 can).
#   - enforcement (cgroup v1, which these VMs mount): proctrack/cgroup, task/affinity + task/cgroup
#     with ConstrainCores (a step's affinity is its cgroup's cpuset: this host's real CPUs, since the
#     nodes claim far more), ConstrainRAMSpace (memory.limit_in_bytes = what the step was granted) and
#     ConstrainDevices (a job sees only the GPUs it was given: fake GPUs are char devices 195:N with no
#     driver, so opening a granted one says ENXIO, an ungranted one EPERM).
#   - accounting: slurmdbd on MariaDB (Debian's packages), AccountingStorageEnforce=associations,
#     limits,qos: an unknown account is refused; one project account and a user association; QOS on
#     accel (at most 3 nodes per user) and preproc (16 running jobs, 128 CPUs per job, 256 per user),
#     DenyOnLimit so an impossible job is refused at submit instead of pending for ever.
#   - submit checks (Lua): no --account → refused (Betzy: "must specify account"; Slurm alone would
#     use the user's default account); normal: --time required, --mem refused; accel: GPUs required.
#   - jobs run as an unprivileged local user (`cluster user`); its Apptainer runs without root
#     (user namespaces, squashfuse through /dev/fuse).
#   - each node has its own small /tmp (tmpfs of `cluster tmp_size`, like Betzy's 1.5 GB /tmp) and
#     its own `hostname` (own mount and UTS namespaces); jobs' files must live elsewhere (the test
#     tier uses /var/tmp/slurm-tier).
# Not enforced here: CPU time itself (every node is this host's few cores), network (no netem in the
# kernel), real GPUs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=/var/lib/slurm-local          # controller state, slurmd spool dirs, fake GPU device files
RUN=/run/slurm-local                # PID files
LOG=/var/log/slurm-local
CONF=/etc/slurm                     # default location, so plain sinfo/sbatch/srun find the cluster
DB_DATA=/var/lib/mysql
DB_SOCK=/run/mysqld/mysqld.sock
DB_PID=/run/mysqld/mariadbd.pid
HOSTS_MARK="# slurm-local nodes"
export CLUSTER_PROFILE=${SLURM_LOCAL_PROFILE:-local}
# shellcheck source=../slurm/common.sh
source "$ROOT/slurm/common.sh"

log() { echo "slurm-local: $*" >&2; }

install_packages() {
  local missing=() p
  for p in slurmctld slurmd slurmdbd slurm-client munge mariadb-server; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  command -v unshare >/dev/null || missing+=(util-linux)
  ((${#missing[@]})) || return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq -o DPkg::Lock::Timeout=600
  # policy-rc.d style environments refuse to start services from postinst: that is fine, we start
  # the daemons ourselves (by PID) below.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# --- the profile ------------------------------------------------------------------------------------

cluster_setting() { sl_map_lines cluster | awk -v k="$1" '$2 == k { print $3; exit }'; }

# node_field "k=v k=v" KEY -> v
node_field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2; exit }'; }

# Nodes as "name port partition cpus sockets cores threads memory gpus", from the `node` lines.
NODE_ROWS=()
read_nodes() {
  local part count rest i n=0 s c t
  while read -r _ part count rest; do
    s=$(node_field "$rest" sockets); c=$(node_field "$rest" cores_per_socket); t=$(node_field "$rest" threads_per_core)
    for ((i = 1; i <= count; i++)); do
      n=$((n + 1))
      NODE_ROWS+=("${part:0:1}$i $((17000 + n)) $part $((s * c * t)) $s $c $t $(node_field "$rest" memory_mb) $(node_field "$rest" gpus)")
    done
  done < <(sl_map_lines node)
  ((${#NODE_ROWS[@]})) || sl_die 2 "profile $(sl_map_file) has no node lines"
}

node_names() { local r; for r in "${NODE_ROWS[@]}"; do echo "${r%% *}"; done; }

# The nodes of one partition as a Slurm list ("n[1-4]").
part_nodes() {
  local r names=()
  for r in "${NODE_ROWS[@]}"; do
    read -r name _ part _ <<<"$r"
    [ "$part" = "$1" ] && names+=("$name")
  done
  echo "${1:0:1}[1-${#names[@]}]"
}

partitions() { sl_map_lines node | awk '{ print $2 }'; }

node_lines() {
  local r name port part cpus s c t mem gpus
  for r in "${NODE_ROWS[@]}"; do
    read -r name port part cpus s c t mem gpus <<<"$r"
    echo "NodeName=$name NodeHostname=$name NodeAddr=127.0.0.1 Port=$port CPUs=$cpus Boards=1 SocketsPerBoard=$s" \
      "CoresPerSocket=$c ThreadsPerCore=$t RealMemory=$mem${gpus:+ Gres=gpu:$gpus} State=UNKNOWN"
  done
}

# PartitionName lines: node counts, time limit, whole nodes where memory is not requested, default
# memory per CPU = node memory / CPUs (Slurm counts hyperthreads), and the partition's QOS.
partition_lines() {
  local part first=YES range r cpus mem line
  for part in $(partitions); do
    line="PartitionName=$part Nodes=$(part_nodes "$part") Default=$first"
    first=NO
    range=$(sl_rule "$part" nodes)
    [ -n "$range" ] && line+=" MinNodes=${range%-*} MaxNodes=${range#*-}"
    [ "$(sl_rule "$part" mem)" = forbidden ] && line+=" OverSubscribe=EXCLUSIVE"
    for r in "${NODE_ROWS[@]}"; do
      read -r _ _ p cpus _ _ _ mem _ <<<"$r"
      [ "$p" = "$part" ] && break
    done
    line+=" DefMemPerCPU=$((mem / cpus))"
    [ -n "$(sl_rule "$part" max_time)" ] && line+=" MaxTime=$(sl_rule "$part" max_time)"
    [ -n "$(qos_limits "$part")" ] && line+=" QOS=$part"
    echo "$line State=UP"
  done
}

# sacctmgr limits of a partition's QOS from its per-user rules (empty: no QOS).
qos_limits() {
  local v out=()
  v=$(sl_rule "$1" max_nodes_per_user); [ -n "$v" ] && out+=("MaxTRESPerUser=node=$v")
  v=$(sl_rule "$1" max_running); [ -n "$v" ] && out+=("MaxJobsPerUser=$v")
  v=$(sl_rule "$1" max_cpus_per_job); [ -n "$v" ] && out+=("MaxTRESPerJob=cpu=$v")
  v=$(sl_rule "$1" max_cpus_per_user); [ -n "$v" ] && out+=("MaxTRESPerUser=cpu=$v")
  echo "${out[*]}"
}

# The Lua submit checks' rule table: { normal = { mem = "forbidden", ... }, ... } for the keys it checks.
lua_rules() {
  local part key v
  echo "local rules = {"
  for part in $(partitions); do
    printf '  ["%s"] = {' "$part"
    for key in account time mem gpus gpus_per_task; do
      v=$(sl_rule "$part" "$key")
      [ -n "$v" ] && printf ' %s = "%s",' "$key" "$v"
    done
    echo " },"
  done
  echo "}"
}

# --- configuration ------------------------------------------------------------------------------------

write_config() {
  mkdir -p "$STATE/ctld" "$STATE/gpu" "$RUN" "$LOG" "$CONF"
  local ctl_host
  ctl_host=$(hostname)
  cat >"$CONF/slurm.conf.new" <<EOF
# Written by scripts/slurm-local.sh from $(sl_map_file): a one-host test cluster as strict as Betzy.
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
# Nodes claim Betzy's cores and memory although this host has far fewer.
SlurmdParameters=config_overrides
ProctrackType=proctrack/cgroup
TaskPlugin=task/affinity,task/cgroup
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
JobSubmitPlugins=lua
# Partition limits are checked at submit time (sbatch -p normal -N2 fails there, not in the queue).
EnforcePartLimits=ALL
JobAcctGatherType=jobacct_gather/cgroup
JobAcctGatherFrequency=task=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
SchedulerParameters=sched_interval=5,bf_interval=5
$(node_lines)
$(partition_lines)
EOF
  cat >"$CONF/cgroup.conf.new" <<EOF
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainDevices=yes
EOF
  local accel
  accel=$(for r in "${NODE_ROWS[@]}"; do read -r n _ _ _ _ _ _ _ g <<<"$r"; [ -n "$g" ] && echo "$n"; done | paste -sd,)
  cat >"$CONF/gres.conf.new" <<EOF
# Fake GPUs: char devices 195:N (NVIDIA's major) with no driver behind them: enough for Slurm to
# allocate them, export CUDA_VISIBLE_DEVICES and fence them off with the devices cgroup.
NodeName=$accel Name=gpu File=$STATE/gpu/nvidia[0-3]
EOF
  {
    echo "-- Written by scripts/slurm-local.sh from $(sl_map_file): the profile's submit rules."
    lua_rules
    cat <<'EOF'

local function given(v)
  return v ~= nil and v ~= slurm.NO_VAL64 and v ~= slurm.NO_VAL
end

local function has_gpu(tres)
  return tres ~= nil and string.find(tres, "gpu") ~= nil
end

function slurm_job_submit(job_desc, part_list, submit_uid)
  local part = job_desc.partition or "normal"
  local r = rules[part] or {}
  if r.account == "required" and (job_desc.account == nil or job_desc.account == "") then
    slurm.log_user("jobs must specify an account: add --account=PROJECT (or set SBATCH_ACCOUNT); see `projects`")
    return slurm.ERROR
  end
  if r.time == "required" and not given(job_desc.time_limit) then
    slurm.log_user("partition " .. part .. " jobs must specify a walltime: add --time=D-HH:MM:SS")
    return slurm.ERROR
  end
  local mem = given(job_desc.min_mem_per_node) or given(job_desc.min_mem_per_cpu)
  if r.mem == "forbidden" and mem then
    slurm.log_user("partition " .. part .. " allocates whole nodes: remove --mem/--mem-per-cpu from the job")
    return slurm.ERROR
  end
  if r.mem == "required" and not mem then
    slurm.log_user("partition " .. part .. " needs a memory request: add --mem-per-cpu=SIZE")
    return slurm.ERROR
  end
  if r.gpus_per_task == "forbidden" and has_gpu(job_desc.tres_per_task) then
    slurm.log_user("partition " .. part .. ": --gpus-per-task is not supported; use --gpus or --gpus-per-node")
    return slurm.ERROR
  end
  local gpus = has_gpu(job_desc.tres_per_job) or has_gpu(job_desc.tres_per_node)
  if r.gpus == "required" and not gpus then
    slurm.log_user("partition " .. part .. " needs GPUs: add --gpus=N or --gpus-per-node=N")
    return slurm.ERROR
  end
  if r.gpus == "forbidden" and (gpus or has_gpu(job_desc.tres_per_task)) then
    slurm.log_user("partition " .. part .. " has no GPUs: remove the GPU request")
    return slurm.ERROR
  end
  return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  return slurm.SUCCESS
end
EOF
  } >"$CONF/job_submit.lua.new"
  cat >"$CONF/slurmdbd.conf.new" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurm-local
EOF
  chmod 600 "$CONF/slurmdbd.conf.new"
  local f changed=0
  for f in slurm.conf cgroup.conf gres.conf job_submit.lua slurmdbd.conf; do
    if cmp -s "$CONF/$f.new" "$CONF/$f"; then rm -f "$CONF/$f.new"; else mv "$CONF/$f.new" "$CONF/$f"; changed=1; fi
  done
  for f in 0 1 2 3; do
    [ -c "$STATE/gpu/nvidia$f" ] && [ ! -L "$STATE/gpu/nvidia$f" ] || { rm -f "$STATE/gpu/nvidia$f"; mknod -m 666 "$STATE/gpu/nvidia$f" c 195 "$f"; }
  done
  # Node names must resolve (srun, MASTER_ADDR); all nodes are this host.
  local line
  line="127.0.0.1 $(node_names | paste -sd ' ') $HOSTS_MARK"
  if ! grep -qxF "$line" /etc/hosts; then
    sed -i "/$HOSTS_MARK\$/d" /etc/hosts
    echo "$line" >>/etc/hosts
  fi
  return $((changed == 0 ? 1 : 0))
}

# The unprivileged user the jobs run as, and what its Apptainer needs: FUSE for squashfuse (Debian's
# udev rule makes /dev/fuse 0666; these VMs leave it 0600, which forces a full SIF extraction).
setup_user() {
  local user
  user=$(cluster_setting user)
  [ -n "$user" ] || sl_die 2 "profile $(sl_map_file) names no 'cluster user'"
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
  [ -c /dev/fuse ] && chmod 666 /dev/fuse
  mkdir -p /var/tmp/slurm-tier && chmod 1777 /var/tmp/slurm-tier
  # Jobs run the wrappers and images from the checkout: a test bed cloned under a private directory
  # (/root is 0700) gets traverse-only rights (o+x) on the directories above it, nothing more.
  local dir=$ROOT
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    runuser -u "$user" -- test -x "$dir" || { log "$user may now traverse $dir (o+x)"; chmod o+x "$dir"; }
  done
  runuser -u "$user" -- test -r "$ROOT/slurm/common.sh" \
    || log "warning: $user cannot read $ROOT (jobs run the wrappers from it): make the path readable (chmod o+rX)"
}

# --- daemons -------------------------------------------------------------------------------------------

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
  local n=$(($1 * 10)); shift
  while ((n-- > 0)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

db() { mariadb --protocol=socket -S "$DB_SOCK" -uroot "$@"; }

start_mariadb() {
  if ! pid_alive "$DB_PID"; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if [ ! -d "$DB_DATA/mysql" ]; then
      mariadb-install-db --user=mysql --datadir="$DB_DATA" --auth-root-authentication-method=socket >/dev/null
    fi
    # Small: the accounting database of a test cluster.
    setsid runuser -u mysql -- mariadbd --datadir="$DB_DATA" --socket="$DB_SOCK" --pid-file="$DB_PID" \
      --bind-address=127.0.0.1 --innodb-buffer-pool-size=32M --performance-schema=OFF \
      --log-error="$LOG/mariadb.log" </dev/null >/dev/null 2>&1 &
  fi
  wait_for 60 db -e 'select 1' || { log "MariaDB did not answer; see $LOG/mariadb.log"; exit 3; }
  db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
         CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm-local';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

start_slurmdbd() {
  pid_alive "$RUN/slurmdbd.pid" || slurmdbd
  wait_for 60 sacctmgr -n show cluster || { log "slurmdbd did not answer; see $LOG/slurmdbd.log"; exit 3; }
}

# Cluster, account, user association and the partitions' QOS, in the accounting database (idempotent).
setup_accounting() {
  local account user part limits
  account=$(cluster_setting account)
  user=$(cluster_setting user)
  [ -n "$(sacctmgr -n -P show cluster format=cluster where cluster=local)" ] || sacctmgr -i -Q add cluster local
  for part in $(partitions); do
    limits=$(qos_limits "$part")
    [ -n "$limits" ] || continue
    [ -n "$(sacctmgr -n -P show qos format=name where name="$part")" ] || sacctmgr -i -Q add qos "$part"
    # shellcheck disable=SC2086  # limits are separate KEY=VALUE words
    sacctmgr -i -Q modify qos where name="$part" set $limits Flags=DenyOnLimit >/dev/null
  done
  [ -n "$(sacctmgr -n -P show account format=account where account="$account")" ] \
    || sacctmgr -i -Q add account "$account" cluster=local description="test project" organization=local
  local who
  for who in "$user" root; do
    [ -n "$(sacctmgr -n -P show assoc format=user where user="$who" account="$account")" ] \
      || sacctmgr -i -Q add user "$who" account="$account" cluster=local
  done
}

start() {
  local t0=$SECONDS
  install_packages
  read_nodes
  setup_user
  local restart=0
  write_config && restart=1
  if ((restart)) && pid_alive "$RUN/slurmctld.pid"; then
    log "configuration changed: restarting the daemons"
    stop_slurm
  fi
  start_munge
  start_mariadb
  start_slurmdbd
  setup_accounting
  if ! pid_alive "$RUN/slurmctld.pid"; then
    slurmctld
  fi
  wait_for 20 scontrol ping || { log "slurmctld did not answer; see $LOG/slurmctld.log"; exit 3; }
  local name tmp_size
  tmp_size=$(cluster_setting tmp_size)
  for name in $(node_names); do
    mkdir -p "$STATE/spool/$name"
    pid_alive "$RUN/slurmd-$name.pid" && continue
    # Own UTS namespace (jobs on this node see `hostname` = the node's name) and mount namespace with
    # the node's own small /tmp.
    unshare --uts --mount --propagation private sh -c \
      'hostname "$1" && mount -t tmpfs -o "size=$2,mode=1777" tmpfs /tmp && exec slurmd -N "$1"' sh "$name" "${tmp_size:-1536M}"
  done
  # Nodes left DOWN by an earlier stop come back by themselves (ReturnToService=2) once they register.
  if ! wait_for 30 all_idle; then
    scontrol update nodename=ALL state=resume >/dev/null 2>&1 || true
    wait_for 20 all_idle || { log "nodes did not come up:"; sinfo -N >&2; exit 3; }
  fi
  log "up in $((SECONDS - t0)) s: $(sinfo -h -o '%P=%D' | tr '\n' ' ')"
}

all_idle() {
  local states
  states=$(sinfo -h -N -o '%t' | sort -u | tr '\n' ' ')
  [ "$states" = "idle " ]
}

stop_pidfile() {
  local pid
  [ -e "$1" ] || return 0
  if pid_alive "$1"; then
    pid=$(cat "$1")
    kill "$pid"
    wait_pid_gone "$pid"
  fi
  rm -f "$1"
}

stop_slurm() {
  local pidfile
  for pidfile in "$RUN"/slurmd-*.pid "$RUN/slurmctld.pid"; do stop_pidfile "$pidfile"; done
}

stop() {
  stop_slurm
  stop_pidfile "$RUN/slurmdbd.pid"
  stop_pidfile "$DB_PID"
  log "stopped (munged left running: other tools may use it)"
}

wait_pid_gone() {
  local n=100
  while kill -0 "$1" 2>/dev/null && ((n-- > 0)); do sleep 0.1; done
  kill -0 "$1" 2>/dev/null && kill -9 "$1" 2>/dev/null || true
}

status() {
  local rc=0 pidfile name
  read_nodes
  for pidfile in "$DB_PID" "$RUN/slurmdbd.pid" "$RUN/slurmctld.pid" \
    $(for name in $(node_names); do echo "$RUN/slurmd-$name.pid"; done); do
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
