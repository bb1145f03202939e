#!/usr/bin/env bash
# Shared by the wrappers in slurm/: the cluster profile (profiles/NAME.profile), its partition-rule
# check, submission, container binds and the per-node launcher. Host side only: bash + coreutils.
#
# Sourced by the wrappers; also runs on its own:
#   bash slurm/common.sh check WRAPPER [SBATCH_OPTION...]   # rule check only (exit 2 + reasons)
#   bash slurm/common.sh binds NAME...                      # resolved host paths, one per line
#   bash slurm/common.sh node-run TMPBASE:TARGET FORWARD -- CMD...  # inside an srun step (see sl_node_run)
#
# Environment:
#   CLUSTER_PROFILE  betzy (default), saga, olivia, local, or a path to a profile file
#   BIND_<NAME>      replaces the host path of bind NAME (out, tmp, shards, runs)
#   SLURM_DRY_RUN=1  print the commands (sbatch, srun, apptainer) instead of running them

SL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SL_ROOT=$(dirname "$SL_DIR")

sl_die() { # CODE MESSAGE: one line on stderr, then exit (2 = bad input, 3 = environment)
  echo "${SL_NAME:-slurm}: $2" >&2
  exit "$1"
}

# Print a command as one shell-quoted line (what golden files and dry runs show), or run it.
sl_show() {
  local out="" a
  for a in "$@"; do out+="$(printf '%q' "$a") "; done
  echo "${out% }"
}
sl_run() {
  if [ "${SLURM_DRY_RUN:-0}" = 1 ]; then sl_show "$@"; else "$@"; fi
}

sl_map_file() {
  local p=${CLUSTER_PROFILE:-betzy}
  case $p in
    */*) [ -f "$p" ] || sl_die 2 "profile file $p does not exist" ; echo "$p" ;;
    *) [ -f "$SL_ROOT/profiles/$p.profile" ] \
         || sl_die 2 "unknown cluster profile '$p' (have: $(cd "$SL_ROOT/profiles" && ls ./*.profile | sed 's#./##; s#\.profile##' | paste -sd ' '))"
       echo "$SL_ROOT/profiles/$p.profile" ;;
  esac
}

# Expand $NAME and ${NAME} from the environment, nothing else (no eval: paths are data, not code).
# USER falls back to the account name: batch systems and `su` do not always set it.
sl_expand() {
  local s=$1 out="" name re='^\{([A-Za-z_][A-Za-z0-9_]*)\}(.*)$|^([A-Za-z_][A-Za-z0-9_]*)(.*)$'
  while [[ $s == *'$'* ]]; do
    out+=${s%%'$'*}
    s=${s#*'$'}
    if [[ $s =~ $re ]]; then
      name=${BASH_REMATCH[1]:-${BASH_REMATCH[3]}}
      s=${BASH_REMATCH[2]}${BASH_REMATCH[4]}
    else
      out+='$'; continue   # a '$' that starts no name is just a character
    fi
    if [[ -v $name ]]; then out+=${!name}
    elif [ "$name" = USER ]; then out+=$(id -un)
    else sl_die 2 "profile $(sl_map_file) uses \$$name, which is not set here (set it, or set BIND_<NAME>)"
    fi
  done
  printf '%s\n' "$out$s"
}

# Lines of the profile whose first field is $1, comments and blank lines removed.
sl_map_lines() {
  local file
  file=$(sl_map_file) || exit
  sed -e 's/#.*//' "$file" | awk -v kind="$1" '$1 == kind'
}

# sl_rule PARTITION KEY -> value (empty when the profile has no such rule)
sl_rule() {
  sl_map_lines rule | awk -v p="$1" -v k="$2" '$2 == p && $3 == k { print $4; exit }'
}

# sl_bind NAME -> "HOST<TAB>CONTAINER<TAB>MODE", host path resolved (BIND_<NAME> wins).
sl_bind() {
  local name=$1 line host ctr mode override
  line=$(sl_map_lines bind | awk -v n="$name" '$2 == n { print $3 "\t" $4 "\t" $5; exit }')
  [ -n "$line" ] || sl_die 2 "profile $(sl_map_file) has no bind named '$name'"
  IFS=$'\t' read -r host ctr mode <<<"$line"
  override="BIND_${name^^}"
  if [ -n "${!override:-}" ]; then host=${!override}; else host=$(sl_expand "$host") || exit; fi
  case $host in
    *:* | *,*) sl_die 2 "bind $name: host path '$host' contains ':' or ',', which apptainer --bind cannot express" ;;
    /*) ;;
    *) sl_die 2 "bind $name: host path '$host' must be absolute" ;;
  esac
  printf '%s\t%s\t%s\n' "$host" "$ctr" "${mode:-rw}"
}

# sl_bind_args NAME... : appends --bind HOST:CONTAINER:MODE to the array SL_BINDS and records each
# host path in SL_HOST[NAME].
declare -gA SL_HOST=()
declare -ga SL_BINDS=()
sl_bind_args() {
  local name line host ctr mode
  for name in "$@"; do
    line=$(sl_bind "$name") || exit
    IFS=$'\t' read -r host ctr mode <<<"$line"
    SL_HOST[$name]=$host
    SL_BINDS+=(--bind "$host:$ctr:$mode")
  done
}

# sl_bind_input VAR TARGET [dir]: binds the host file named by $VAR read-only at TARGET (with `dir`, its
# directory at TARGET: files with sidecars, like a Shapefile) and sets SL_INPUT to the file's path inside.
sl_bind_input() {
  local var=$1 target=$2 how=${3:-file} host src
  host=${!var:-}
  [ -f "$host" ] || sl_die 2 "$var $host does not exist"
  host=$(realpath "$host")
  src=$host
  [ "$how" = dir ] && src=$(dirname "$host")
  [[ $src != *[:,]* ]] || sl_die 2 "$var path '$src' contains ':' or ',', which apptainer --bind cannot express"
  SL_BINDS+=(--bind "$src:$target:ro")
  SL_INPUT=$target
  [ "$how" = dir ] && SL_INPUT=$target/$(basename "$host")
  return 0
}

# sl_env_args NAME...: appends --env NAME=VALUE to the array SL_ENVS for each variable that is set:
# under --cleanenv the container sees only what is forwarded. For job-level values (the same on every
# node); values that exist only inside a step go through sl_node_run's FORWARD list.
declare -ga SL_ENVS=()
sl_env_args() {
  local name
  for name in "$@"; do
    if [[ -v $name ]]; then
      [[ ${!name} != *,* ]] || sl_die 2 "cannot forward $name='${!name}': apptainer --env splits on ','"
      SL_ENVS+=(--env "$name=${!name}")
    fi
  done
}

# sl_node_run_cmd FORWARD: sets SL_NODE_RUN, the per-node launcher (see sl_node_run) given the
# profile's tmp bind, and SL_HOST[tmp].
sl_node_run_cmd() {
  local line host ctr mode
  line=$(sl_bind tmp) || exit
  IFS=$'\t' read -r host ctr mode <<<"$line"
  SL_HOST[tmp]=$host
  SL_NODE_RUN=(bash "$SL_DIR/common.sh" node-run "$host:$ctr" "$1" --)
}

# sl_image VAR WHAT: the absolute path of the image $VAR names (exit 2 when unset, 3 when missing).
sl_image() {
  local path=${!1:-}
  [ -n "$path" ] || sl_die 2 "set $1 to the $2 to run"
  [ -f "$path" ] || sl_die 3 "$1 $path does not exist"
  realpath "$path"
}

# sl_sure2_inputs: what both assess wrappers check before sbatch (and again in the job): the image,
# the field list, the output bind.
sl_sure2_inputs() {
  sl_image SURE2_IMAGE sure2.sif >/dev/null || exit
  [ -z "${ASSESS_FIELDS:-}" ] || [ -f "$ASSESS_FIELDS" ] || sl_die 2 "ASSESS_FIELDS $ASSESS_FIELDS does not exist"
  sl_bind out >/dev/null || exit
}

# sl_sure2_setup: what both assess wrappers share. Sets SL_EXEC (apptainer exec of sure2.sif with
# binds and env), SL_NODE_RUN (the per-node launcher, /tmp made and removed) and SL_FIELDS (--fields
# for the batch, when ASSESS_FIELDS is given).
sl_sure2_setup() {
  local image fields=${ASSESS_FIELDS:-}
  image=$(sl_image SURE2_IMAGE sure2.sif) || exit
  sl_bind_args out
  SL_FIELDS=()
  if [ -n "$fields" ]; then
    sl_bind_input ASSESS_FIELDS /in/fields.txt
    SL_FIELDS=(--fields "$SL_INPUT")
  fi
  [ "${SLURM_DRY_RUN:-0}" = 1 ] || mkdir -p "${SL_HOST[out]}"
  # the array's identity: the batch inside decides from it (and the output's mount) how copies divide work
  sl_env_args SLURM_JOB_ID SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_MIN SLURM_ARRAY_TASK_COUNT
  SL_EXEC=(apptainer exec --containall --cleanenv "${SL_BINDS[@]}" "${SL_ENVS[@]}" "$image")
  sl_node_run_cmd "SLURM_STEP_ID SLURM_CPUS_PER_TASK SLURMD_NODENAME"
}

# --- partition-rule check --------------------------------------------------------------------------

sl_minutes() { # Slurm time string -> minutes (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS)
  local t=$1 d=0 h=0 m=0 s=0
  if [[ $t == *-* ]]; then
    d=${t%%-*}; t=${t#*-}
    IFS=: read -r h m s <<<"$t"
  else
    local parts
    IFS=: read -ra parts <<<"$t"
    case ${#parts[@]} in
      1) m=${parts[0]} ;;
      2) m=${parts[0]}; s=${parts[1]} ;;
      *) h=${parts[0]}; m=${parts[1]}; s=${parts[2]} ;;
    esac
  fi
  echo $(((10#${d:-0} * 24 + 10#${h:-0}) * 60 + 10#${m:-0} + (10#${s:-0} > 0 ? 1 : 0)))
}

# The #SBATCH options of a script: sbatch reads them until the first command line.
sl_sbatch_lines() {
  awk 'NR == 1 && /^#!/ { next }
       /^#SBATCH/ { sub(/^#SBATCH[ \t]+/, ""); sub(/[ \t]+#.*$/, ""); print; next }
       /^[ \t]*(#|$)/ { next }
       { exit }' "$1"
}

# sl_check WRAPPER [SBATCH_OPTION...]: the wrapper's #SBATCH lines, then the options (which win, as
# with sbatch), against the profile's rules. Prints one "what to change" line per problem; returns 2.
sl_check() {
  local wrapper=$1; shift
  local -a opts=()
  local line
  while IFS= read -r line; do
    # shellcheck disable=SC2206  # #SBATCH lines are split on blanks, like sbatch does
    opts+=($line)
  done < <(sl_sbatch_lines "$wrapper")
  opts+=("$@")

  local part="" nodes="" mem="" gpus="" gpt="" gpn="" time="" array="" account=${SBATCH_ACCOUNT:-} o v
  local i=0
  while ((i < ${#opts[@]})); do
    o=${opts[i]}; v=""
    case $o in
      --*=*) v=${o#*=}; o=${o%%=*} ;;
      -[pNGtanA]?*) v=${o:2}; o=${o:0:2} ;;
      --partition | --nodes | --mem | --mem-per-cpu | --mem-per-gpu | --gpus | --gpus-per-node | \
        --gpus-per-task | --gres | --time | --array | --account | -p | -N | -G | -t | -a | -A)
        i=$((i + 1)); v=${opts[i]:-} ;;
    esac
    case $o in
      -A | --account) account=$v ;;
      -p | --partition) part=$v ;;
      -N | --nodes) nodes=$v ;;
      --mem | --mem-per-cpu | --mem-per-gpu) mem="$o=$v" ;;
      -G | --gpus) gpus="$o=$v" ;;
      --gpus-per-node) gpus="$o=$v"; gpn=$v ;;
      --gres) [[ $v == *gpu* ]] && { gpus="$o=$v"; gpn=${v##*:}; } ;;
      --gpus-per-task) gpt="$o=$v" ;;
      -t | --time) time=$v ;;
      -a | --array) array=$v ;;
    esac
    i=$((i + 1))
  done

  local profile where problems=()
  profile=$(sl_map_file) || return
  part=${part:-normal}
  where="partition $part on profile $(basename "$profile" .profile)"
  if [ -z "$(sl_map_lines rule | awk -v p="$part" '$2 == p')" ]; then
    echo "rule check: $where: no such partition here (known: $(sl_map_lines rule | awk '{print $2}' | sort -u | paste -sd ' '))" >&2
    return 2
  fi

  if [ "$(sl_rule "$part" account)" = required ] && [ -z "$account" ]; then
    echo "rule check: $where: jobs must name a project account: add --account=PROJECT (or set SBATCH_ACCOUNT; \`projects\` on the login node lists yours)" >&2
    return 2
  fi
  if [ "$(sl_rule "$part" time)" = required ] && [ -z "$time" ]; then
    problems+=("needs a walltime: add --time=D-HH:MM:SS")
  fi
  local range min max n
  range=$(sl_rule "$part" nodes)
  if [ -n "$range" ]; then
    min=${range%-*}; max=${range#*-}; n=${nodes:-1}; n=${n%%-*}
    if ((n < min)); then
      if ((min == max)); then problems+=("asks for ${n} nodes but takes exactly $min: use --nodes=$min")
      else problems+=("asks for ${nodes:-1 (the default)} node(s) but needs at least $min: use --nodes=$min or more")
      fi
    elif ((n > max)); then
      if ((max == 1)); then problems+=("asks for $nodes nodes but takes one node per job: use --nodes=1 (or the normal partition for 4+ nodes)")
      else problems+=("asks for $nodes nodes, more than its $max: use --nodes=$max or fewer")
      fi
    fi
  fi
  case $(sl_rule "$part" mem) in
    forbidden) [ -n "$mem" ] && problems+=("does not accept $mem (whole nodes, all memory included): remove it; the wrapper gives each step memory with srun --mem-per-cpu") ;;
    required) [ -z "$mem" ] && problems+=("needs a memory request: add --mem-per-cpu=SIZE (or --mem=SIZE)") ;;
  esac
  case $(sl_rule "$part" gpus) in
    required) [[ -z $gpus || $gpus =~ [=:]0+$ ]] && problems+=("needs GPUs: add --gpus-per-node=N (or --gpus=N)") ;;
    forbidden) [ -n "$gpus" ] && problems+=("has no GPUs: remove $gpus, or submit to accel") ;;
  esac
  if [ -n "$gpt" ] && [ "$(sl_rule "$part" gpus_per_task)" = forbidden ]; then
    problems+=("refuses $gpt: use --gpus-per-node=N (torchrun starts one process per GPU)")
  fi
  max=$(sl_rule "$part" gpus_per_node)
  if [ -n "$max" ] && [ -n "$gpn" ] && [[ $gpn =~ ^[0-9]+$ ]] && ((gpn > max)); then
    problems+=("has $max GPUs per node, not $gpn: use --gpus-per-node=$max or fewer")
  fi
  max=$(sl_rule "$part" max_nodes_per_user)
  if [ -n "$max" ] && [ -n "$nodes" ] && ((${nodes%%-*} > max)); then
    problems+=("allows at most $max nodes per user, not --nodes=$nodes: use --nodes=$max or fewer")
  fi
  max=$(sl_rule "$part" max_time)
  if [ -n "$max" ] && [ -n "$time" ] && (($(sl_minutes "$time") > $(sl_minutes "$max"))); then
    problems+=("allows at most $max, not --time=$time: shorten it (jobs here are resumable: resubmit to continue)")
  fi
  max=$(sl_rule "$part" max_running)
  if [ -n "$max" ] && [ -n "$array" ]; then
    local throttle="" count
    [[ $array == *%* ]] && throttle=${array##*%}
    count=$(sl_array_size "${array%%%*}")
    if { [ -n "$throttle" ] && ((throttle > max)); } || { [ -z "$throttle" ] && ((count > max)); }; then
      problems+=("runs at most $max jobs at once: throttle the array, e.g. --array=${array%%%*}%$max")
    fi
  fi

  ((${#problems[@]} == 0)) && return 0
  local p
  for p in "${problems[@]}"; do echo "rule check: $where $p" >&2; done
  return 2
}

sl_array_size() { # 0-99 or 1,3,5-7 or 0-15:2 -> number of tasks
  local total=0 piece a b step
  IFS=, read -ra pieces <<<"$1"
  for piece in "${pieces[@]}"; do
    step=1; [[ $piece == *:* ]] && { step=${piece#*:}; piece=${piece%:*}; }
    a=${piece%-*}; b=${piece#*-}
    total=$((total + (b - a) / step + 1))
  done
  echo "$total"
}

# --- submission ------------------------------------------------------------------------------------

# sl_submit WRAPPER ARGS...: ARGS are sbatch options, then optionally `--` and the job's arguments.
# Checks the rules first; SLURM_WRAPPERS_DIR tells the job where this directory is (sbatch runs a
# spooled copy of the script, so the job cannot find its siblings from $0).
sl_submit() {
  local wrapper=$1; shift
  local -a opts=() job_args=()
  while (($#)); do
    if [ "$1" = -- ]; then shift; job_args=("$@"); break; fi
    opts+=("$1"); shift
  done
  [ -n "${CLUSTER_PROFILE:-}" ] \
    || echo "${SL_NAME:-slurm}: cluster profile betzy (CLUSTER_PROFILE is unset; set it to local, saga, olivia or a profile file)" >&2
  sl_check "$wrapper" "${opts[@]}" || exit 2
  # The wrapper's own checks (variables, files, images, binds), here rather than after the queue wait.
  if declare -F sl_preflight >/dev/null; then
    (SLURM_SUBMIT_DIR=$PWD; sl_preflight) || exit
  fi
  export SLURM_WRAPPERS_DIR=$SL_DIR
  sl_run sbatch "${opts[@]}" "$wrapper" "${job_args[@]}"
}

# --- inside the job --------------------------------------------------------------------------------

# Stops that reach the batch script: the walltime signal (#SBATCH --signal=B:USR2@T, only to this
# shell), scancel's TERM, a Ctrl-C. sl_trap_stops makes each one TERM for the job's steps (scancel
# --signal without --batch/--full: every step on every node, not this shell); the batch inside stops
# its workers and keeps what is finished. SL_STOPPING names the signal; sl_wait waits through it.
SL_STOPPING=""
sl_trap_stops() {
  local sig
  for sig in USR2 TERM INT; do
    # shellcheck disable=SC2064  # the signal's name is fixed when the trap is set
    trap "sl_stopping $sig" "$sig"
  done
}
sl_stopping() {
  [ -n "$SL_STOPPING" ] && return 0
  SL_STOPPING=$1
  local why=""
  [ "$1" = USR2 ] && why=" (time limit near)"
  echo "$SL_NAME: SIG$1$why: stopping the steps cleanly" >&2
  scancel --signal=TERM "$SLURM_JOB_ID" 2>/dev/null || true
}
sl_wait() { # PID: wait for it through trapped signals; returns its status
  local rc
  while :; do
    rc=0; wait "$1" || rc=$?
    kill -0 "$1" 2>/dev/null || return "$rc"
  done
}
# After a stop: one line saying how to go on, exit 1 (the job did not finish its work).
sl_exit_if_stopped() {
  [ -z "$SL_STOPPING" ] && return 0
  echo "$SL_NAME: stopped by SIG$SL_STOPPING; finished work is kept: resubmit the same command to resume" >&2
  exit 1
}

# First host of a Slurm node list ("a[3-4],n1" -> a3), without asking scontrol.
sl_first_node() {
  if [[ $1 =~ ^([^,[]*)\[([^],-]*) ]]; then echo "${BASH_REMATCH[1]}${BASH_REMATCH[2]}"; else echo "${1%%,*}"; fi
}

# MASTER_ADDR/MASTER_PORT for a rendezvous: the first node of the allocation, a port from the job id
# (two jobs sharing a node do not collide).
sl_rendezvous() {
  MASTER_ADDR=$(sl_first_node "$SLURM_JOB_NODELIST")
  MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
  export MASTER_ADDR MASTER_PORT
}

# sl_trusted_dir PATH: make PATH (mode 700, one component at a time) below components no other user
# can change, or print why not and fail. Every existing component must be root's (sticky if others may
# write to it, like /dev/shm) or ours and writable by nobody else; a symlink counts only if root owns
# it. /dev/shm is shared: another user may have made /dev/shm/$USER, or a symlink in it, to catch our
# temp files. (app/hpc/tempdir.py applies the same rule in Python.)
sl_trusted_dir() {
  local part="" comp me owner mode
  local -a comps
  me=$(id -u)
  IFS=/ read -ra comps <<<"${1#/}"
  for comp in "${comps[@]}"; do
    [ -n "$comp" ] || continue
    part+="/$comp"
    if [ ! -e "$part" ] && [ ! -L "$part" ]; then
      mkdir -m 700 -- "$part" 2>/dev/null || [ -e "$part" ] || { echo "cannot create $part"; return 1; }
    fi
    if [ -L "$part" ]; then
      owner=$(stat -c %u -- "$part")
      [ "$owner" = 0 ] || { echo "$part is a symlink owned by uid $owner"; return 1; }
      part=$(readlink -f -- "$part")
    fi
    [ -d "$part" ] || { echo "$part is not a directory"; return 1; }
    read -r owner mode < <(stat -L -c '%u %a' -- "$part")
    if [ "$owner" = 0 ]; then
      (((8#$mode & 8#022) == 0 || (8#$mode & 8#1000))) || { echo "$part is writable by others and not sticky"; return 1; }
    elif [ "$owner" = "$me" ]; then
      (((8#$mode & 8#022) == 0)) || { echo "$part is ours but writable by group or others (mode $mode)"; return 1; }
    else
      echo "$part is owned by uid $owner, not by us (uid $me)"
      return 1
    fi
  done
}

# sl_sweep_job_temps BASE: per-job temp dirs beside BASE (/dev/shm/$USER/JOBID) of our jobs that are
# gone. A step killed with SIGKILL (walltime, OOM, node-level kill) cannot remove its temp dir, and
# RAM-backed /dev/shm keeps it until the node reboots: the next job of ours on the node removes it.
# A job is gone when Slurm no longer lists it as pending, running or completing.
sl_sweep_job_temps() {
  local parent dir id me
  command -v squeue >/dev/null || return 0   # no way to tell which jobs are gone
  parent=$(dirname "$1")
  me=$(id -u)
  for dir in "$parent"/*; do
    id=$(basename "$dir")
    [[ $id =~ ^[0-9]+$ ]] && [ "$dir" != "$1" ] && [ "$id" != "${SLURM_JOB_ID:-}" ] && [ ! -L "$dir" ] \
      && [ -d "$dir" ] || continue
    [ "$(stat -c %u "$dir")" = "$me" ] || continue
    [ -z "$(squeue -h -j "$id" -o %i 2>/dev/null)" ] || continue
    rm -rf -- "$dir" && echo "node-run: removed the temp dir of job $id, which is gone" >&2
  done
}

# sl_signal_tree SIG PID: SIG to PID and every process below it (children of children, through
# Apptainer's starter and its namespaces: /proc lists them with their host PIDs and parents) except
# the FUSE daemons that serve the container's filesystem: an unprivileged Apptainer mounts the SIF with
# squashfuse, and a squashfuse killed by the signal takes the image away (the payload dies of SIGBUS).
sl_signal_tree() {
  local sig=$1 stat pid ppid rest line
  local -A children=() comm=()
  for stat in /proc/[0-9]*/stat; do
    read -r line <"$stat" 2>/dev/null || continue
    pid=${line%% *}
    rest=${line##*) }   # after "(command name)", which may hold spaces and parentheses
    read -r _ ppid _ <<<"$rest"
    children[$ppid]+=" $pid"
    line=${line#* (}
    comm[$pid]=${line%) *}
  done
  local -a todo=("$2") found=()
  while ((${#todo[@]})); do
    pid=${todo[0]}; todo=("${todo[@]:1}")
    case ${comm[$pid]:-} in
      squashfuse* | fuse-overlayfs | fuse2fs | gocryptfs) continue ;;
    esac
    found+=("$pid")
    # shellcheck disable=SC2206  # a space-separated list of PIDs
    todo+=(${children[$pid]:-})
  done
  kill -s "$sig" "${found[@]}" 2>/dev/null || true
}

# What this step got, as the kernel enforces it: Slurm's CPU count, the affinity mask (CPUs and the
# physical cores they belong to) and the cgroup's memory limit (v1 or v2; "none" where not enforced).
sl_step_grant() {
  local allowed cpus=0 cores mem="none" line path limit a b cpu
  allowed=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)
  declare -A core=()
  local IFS=,
  for range in $allowed; do
    a=${range%-*}; b=${range#*-}
    for ((cpu = a; cpu <= b; cpu++)); do
      cpus=$((cpus + 1))
      core[$(cat "/sys/devices/system/cpu/cpu$cpu/topology/core_cpus_list" 2>/dev/null \
        || cat "/sys/devices/system/cpu/cpu$cpu/topology/thread_siblings_list" 2>/dev/null || echo "$cpu")]=1
    done
  done
  unset IFS
  cores=${#core[@]}
  # the tightest limit on the way up from this process's cgroup (Slurm sets it on the job and the step)
  local root file min=$((1 << 60))
  if line=$(grep -m1 -E '^[0-9]+:memory:' /proc/self/cgroup); then
    root=/sys/fs/cgroup/memory path=${line#*:memory:} file=memory.limit_in_bytes
  elif line=$(grep -m1 '^0::' /proc/self/cgroup); then
    root=/sys/fs/cgroup path=${line#0::} file=memory.max
  fi
  while [ -n "${root:-}" ]; do
    if limit=$(cat "$root$path/$file" 2>/dev/null) && [[ $limit =~ ^[0-9]+$ ]] && ((limit < min)); then min=$limit; fi
    [ -z "$path" ] || [ "$path" = / ] && break
    path=${path%/*}
  done
  ((min < 1 << 60)) && mem="$((min >> 20)) MiB"
  echo "cpus ${SLURM_CPUS_PER_TASK:-?} of ${SLURM_CPUS_ON_NODE:-?} on the node, affinity $allowed ($cpus CPUs, $cores cores), memory limit $mem"
}

# sl_node_run TMPBASE:TARGET FORWARD -- CMD...: runs as the srun task on each node. Makes a private
# temp dir for this step under TMPBASE (RAM, per job; TMPBASE made or accepted by sl_trusted_dir), binds it as the container's TARGET (/tmp) through
# APPTAINER_BIND (so steps that share a host's /dev/shm never share or delete each other's temp),
# passes the variables named in FORWARD into the container (APPTAINERENV_NAME crosses --cleanenv;
# these exist only inside the step, e.g. SLURM_PROCID), waits for CMD, removes the temp dir and exits
# with CMD's status. Signals are passed on to every process below this shell: with
# ProctrackType=proctrack/cgroup (Betzy, and the local test cluster) Slurm delivers a step's signals
# other than SIGKILL (scancel's TERM, what srun forwards: the walltime USR2) only to the task itself,
# this shell, never to CMD's processes (the batch, torchrun's ranks) — shown by the local cluster,
# where a rank never saw the walltime signal. A process that got a signal from Slurm as well simply
# gets it twice (the stop handlers only record it).
sl_node_run() {
  local base=${1%:*} target=${1##*:} forward=$2 name tmp
  shift 3
  local why
  why=$(sl_trusted_dir "$base") || sl_die 3 "temp dir $base on $(hostname) is not safe on a shared node: $why"
  sl_sweep_job_temps "$base"
  tmp=$(mktemp -d "$base/step.XXXXXX") || sl_die 3 "cannot create a temp dir under $base on $(hostname)"
  export APPTAINER_BIND="${APPTAINER_BIND:+$APPTAINER_BIND,}$tmp:$target:rw"
  # ... and the code inside uses it (app.hpc.tempdir's APP_TMPDIR), never the container's own /dev/shm:
  # an unsized tmpfs charged to the job's memory, and under a user namespace not even a trusted one.
  export APPTAINERENV_APP_TMPDIR=$target
  for name in $forward; do
    [[ -v $name ]] && export "APPTAINERENV_$name=${!name}"
  done
  local where="step ${SLURM_STEP_ID:-batch} on ${SLURMD_NODENAME:-$(hostname)}" rc
  echo "node-run: $where: granted $(sl_step_grant), temp $tmp" >&2
  echo "node-run: $where: start $(date +%s.%N)" >&2
  "$@" &
  local child=$! sig
  for sig in TERM INT USR1 USR2; do
    # shellcheck disable=SC2064  # the signal's name is fixed when the trap is set
    trap "sl_signal_tree $sig $child" "$sig"
  done
  while :; do
    rc=0; wait "$child" || rc=$?
    kill -0 "$child" 2>/dev/null || break   # a signal interrupted wait, CMD still runs: keep waiting
  done
  rm -rf "$tmp"
  rmdir "$base" 2>/dev/null || true   # the job's temp base, once its last step on this host is done
  echo "node-run: $where: end $(date +%s.%N) exit $rc" >&2
  exit "$rc"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  SL_NAME=$(basename "$0")
  set -euo pipefail
  case "${1:-}" in
    check) shift; [ -f "${1:-}" ] || sl_die 2 "usage: $0 check WRAPPER [SBATCH_OPTION...]"
           sl_check "$@" && echo "rule check: ok" ;;
    binds) shift; for n in "$@"; do sl_bind "$n" | cut -f1; done ;;
    node-run) shift; sl_node_run "$@" ;;
    *) sl_die 2 "usage: $0 check WRAPPER [SBATCH_OPTION...] | binds NAME... | node-run TMPBASE:TARGET FORWARD -- CMD..." ;;
  esac
fi
