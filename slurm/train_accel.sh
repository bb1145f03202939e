#!/usr/bin/env bash
#SBATCH --job-name=emb-train
#SBATCH --partition=accel
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=64
#SBATCH --mem=240G
#SBATCH --time=1-00:00:00
#SBATCH --signal=B:USR2@600
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=emb-train-%j.out
#
# EMB training on the accel partition: one container per node, torchrun with one rank per GPU.
#
#   TRAIN_IMAGE=build/train.sif EMB_CONFIG=my.toml bash slurm/train_accel.sh --account=nnXXXXk [SBATCH_OPTION...] [-- KEY=VALUE...]
#
# Run with bash (not sbatch), from anywhere: it checks the profile's partition rules (an account; at
# most 3 nodes per user on Betzy), the image, the config and the binds first, then submits; the
# KEY=VALUE overrides after `--` go to `python -m app.emb.train` (e.g. train.steps=2000). Multi-node:
# --nodes=N. The step gets the job's CPUs explicitly (srun -c: Slurm 22.05/23.02 srun does not inherit
# --cpus-per-task); each rank caps torch's intra-op threads at its share of the physical cores and
# inter-op threads at 2, and logs its CPU binding, threads and device at start. GPUs allocated but not
# usable by torch (an image built for a newer CUDA than the node's driver) stop the job at start with
# exit 3 and the fix; EMB_ALLOW_CPU=1 trains on the CPU instead (tests, debugging).
#
#   TRAIN_IMAGE       train.sif (required)
#   EMB_CONFIG        training config (TOML) on the host (required), bound read-only as /config/run.toml
#   EMB_RUN           run name (default: the job name); checkpoints and metrics go to <runs bind>/EMB_RUN,
#                     so resubmitting with the same name resumes from the newest checkpoint
#   EMB_MAX_REQUEUES  requeues this job may do (default 3, like submitit's timeouts); one more stop
#                     after that ends the job with a clear failure (exit 1), checkpoint kept
#   EMB_ALLOW_CPU     1: train on the CPU when the allocated GPUs are not usable (default: exit 3)
#   CLUSTER_PROFILE, BIND_SHARDS, BIND_RUNS, BIND_TMP: see slurm/common.sh and profiles/
#
# The first line each node prints comes from inside its container: the forwarded environment as the
# training sees it (what crossed --cleanenv); then torchrun takes over that process (exec).
#
# Walltime: 600 s before the limit Slurm sends USR2 to this script (B:), which passes it to srun; srun
# forwards it to every process of the step on every node, the ranks included. The ranks checkpoint at
# the next step boundary and exit 75; torchrun ignores USR2 (set before exec: had it handled USR2 too,
# it would forward a second copy and tear down its workers) and exits 1 once its workers have: it
# never passes the ranks' 75 on. So what happens next is decided from what the ranks wrote:
# <run>/status.json, trusted only when it names this job and this restart:
#   done                          → exit 0
#   this script got INT or TERM   → exit 130, not requeued (scancel, Ctrl-C: a stop, not a walltime)
#   requeue, restarts < maximum   → scontrol requeue; the requeued run (SLURM_RESTART_COUNT=1, 2, ...)
#                                   resumes from that checkpoint. A stop sent to the steps only
#                                   (`scancel --signal=USR2 JOB`, no trap here) takes this path too.
#   requeue, maximum reached      → exit 1 with the reason (resubmit with the same EMB_RUN to go on)
#   interrupted (SIGINT reached   → exit 130, not requeued
#     the ranks)
#   anything else                 → training failed: exit with the step's status (1 if it had none)
set -euo pipefail
SL_NAME=train_accel.sh

# Checked before sbatch and again in the job: image, config, run name, requeue bound, shard bind.
train_inputs() {
  image=$(sl_image TRAIN_IMAGE train.sif) || exit
  config=${EMB_CONFIG:-}
  [ -n "$config" ] || sl_die 2 "set EMB_CONFIG to the training config (TOML) on the host"
  [ -f "$config" ] || sl_die 2 "EMB_CONFIG $config does not exist"
  config=$(realpath "$config")
  [[ $config != *[:,]* ]] || sl_die 2 "EMB_CONFIG path '$config' contains ':' or ',', which apptainer --bind cannot express"
  run_name=${EMB_RUN:-${SLURM_JOB_NAME:-emb-train}}
  [[ $run_name =~ ^[A-Za-z0-9._-]+$ && $run_name != .* ]] || sl_die 2 "EMB_RUN '$run_name' must be a plain name (letters, digits, . _ -)"
  max_requeues=${EMB_MAX_REQUEUES:-3}
  [[ $max_requeues =~ ^[0-9]+$ ]] || sl_die 2 "EMB_MAX_REQUEUES '$max_requeues' must be a whole number"
  local shards
  shards=$(sl_bind shards | cut -f1) || exit
  [ "${SLURM_DRY_RUN:-0}" = 1 ] || [ -d "$shards" ] || sl_die 2 "the shards directory $shards does not exist (set BIND_SHARDS)"
}
sl_preflight() { train_inputs; }
if [ -z "${SLURM_JOB_ID:-}" ]; then
  source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  sl_submit "${BASH_SOURCE[0]}" "$@"
  exit
fi
sl_common=${SLURM_WRAPPERS_DIR:-$SLURM_SUBMIT_DIR/slurm}/common.sh
[ -f "$sl_common" ] || { echo "$SL_NAME: submit with 'bash PATH/TO/slurm/$SL_NAME', not sbatch" >&2; exit 2; }
source "$sl_common"

train_inputs

gpus=${SLURM_GPUS_ON_NODE:-}
if [ -z "$gpus" ] && [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  IFS=, read -ra ids <<<"$CUDA_VISIBLE_DEVICES"; gpus=${#ids[@]}
fi
[ "${gpus:-0}" -gt 0 ] || sl_die 2 "no GPUs allocated: submit with --gpus-per-node=N"
cpus=${SLURM_CPUS_PER_TASK:-$gpus}
# The container's thread caps per rank: app.emb.threads divides the step's physical cores (affinity,
# siblings deduplicated) by the node's ranks; this is only the starting value before Python runs.
threads=$((cpus / gpus > 0 ? cpus / gpus : 1))

sl_bind_args shards runs
# Multi-node NCCL on the interconnect: --containall's /dev has no /dev/infiniband (NCCL would fall back
# to TCP sockets); the profile's `cluster nccl_*` lines (e.g. nccl_ib_hca mlx5) become NCCL_* settings.
[ -d /dev/infiniband ] && SL_BINDS+=(--bind /dev/infiniband)
while read -r _ key value; do
  [[ $key == nccl_* ]] && export "${key^^}=$value" && sl_env_args "${key^^}"
done < <(sl_map_lines cluster)
sl_node_run_cmd "SLURM_PROCID SLURM_NODEID SLURM_LOCALID CUDA_VISIBLE_DEVICES"
sl_rendezvous
export SLURM_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}
export OMP_NUM_THREADS=$threads
sl_env_args SLURM_JOB_ID SLURM_JOB_NAME SLURM_RESTART_COUNT SLURM_NNODES SLURM_JOB_NUM_NODES \
  SLURM_CPUS_PER_TASK SLURM_GPUS_ON_NODE MASTER_ADDR MASTER_PORT OMP_NUM_THREADS EMB_ALLOW_CPU

run_dir="${SL_HOST[runs]}/$run_name"
[ "${SLURM_DRY_RUN:-0}" = 1 ] || mkdir -p "$run_dir"
echo "$SL_NAME: job $SLURM_JOB_ID restart $SLURM_RESTART_COUNT: $SLURM_NNODES node(s) x $gpus GPU(s), run dir $run_dir" >&2

# Set per node inside the container: the first node hosts the rendezvous store (is_host), and each
# agent names itself by its node (--local-addr). Left to guess, agents on nodes whose names resolve to
# one address (the local test cluster) share an FQDN and, in --containall's PID namespaces, often a
# PID too: the rendezvous takes them for one node and waits for ever.
step_cmd=(srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 --cpus-per-task="$cpus" --kill-on-bad-exit=1 \
  "${SL_NODE_RUN[@]}" apptainer exec --nv --containall --cleanenv "${SL_BINDS[@]}" --bind "$config:/config/run.toml:ro" \
  "${SL_ENVS[@]}" "$image" \
  sh -c 'echo "container env on $(uname -n): $(env | grep -E "^(SLURM_|MASTER_|OMP_NUM_THREADS|CUDA_VISIBLE|EMB_ALLOW)" | sort | tr "\n" " ")" >&2; python -m app.hpc.gpus || exit; trap "" USR2; h=0; [ "$SLURM_NODEID" = 0 ] && h=1; cmd=$1; shift; exec "$cmd" --rdzv-conf="is_host=$h" --local-addr="$(uname -n)" "$@"' sh \
  torchrun --nnodes="$SLURM_NNODES" --nproc-per-node="$gpus" --rdzv-backend=c10d \
  --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="$SLURM_JOB_ID" \
  -m app.emb.train --config /config/run.toml data.shards=/shards "run.dir=/runs/$run_name" "$@")
if [ "${SLURM_DRY_RUN:-0}" = 1 ]; then sl_show "${step_cmd[@]}"; exit 0; fi
# A simple command in the background: $! is srun itself, so the traps below signal srun, which
# forwards the signal to every process of the step on every node. Every stop this script receives
# becomes USR2 for the ranks: srun turns a single INT into a status report and two into a kill.
"${step_cmd[@]}" &
step=$!

stopped_by=""
stop() {
  stopped_by=$1
  echo "$SL_NAME: SIG$1: asking the ranks to checkpoint" >&2
  kill -USR2 "$step" 2>/dev/null || true
}
trap 'stop USR2' USR2
trap 'stop INT' INT
trap 'stop TERM' TERM
while :; do
  rc=0; wait "$step" || rc=$?
  kill -0 "$step" 2>/dev/null || break   # a trap interrupted wait; the step is still finishing
done

# The ranks' status.json for this job and restart, as "STATE STEP" (nothing if it is older or absent).
ranks_status() {
  local line
  line=$(cat "$run_dir/status.json" 2>/dev/null) || return 0
  [[ $line =~ \"job\":\ \"$SLURM_JOB_ID\" && $line =~ \"restart\":\ $SLURM_RESTART_COUNT[,}] ]] || return 0
  [[ $line =~ \"state\":\ \"([a-z]+)\",\ \"step\":\ ([0-9]+) ]] && echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}
state="" at=""
read -r state at <<<"$(ranks_status)" || true
resume="resubmit with EMB_RUN=$run_name to resume"

if [ "$state" = done ]; then
  echo "$SL_NAME: training finished (step $at)" >&2
  exit 0
fi
if [ "$stopped_by" = INT ] || [ "$stopped_by" = TERM ]; then
  echo "$SL_NAME: stopped by SIG$stopped_by (ranks: ${state:-no status} ${at:+at step $at}); not requeued: $resume" >&2
  exit 130
fi
case $state in
  requeue)
    if ((SLURM_RESTART_COUNT >= max_requeues)); then
      echo "$SL_NAME: checkpointed at step $at, but job $SLURM_JOB_ID was already requeued $SLURM_RESTART_COUNT" \
        "time(s) (EMB_MAX_REQUEUES=$max_requeues): not requeueing again; $resume" >&2
      exit 1
    fi
    echo "$SL_NAME: checkpointed at step $at (step exit $rc): requeueing job $SLURM_JOB_ID" \
      "($((SLURM_RESTART_COUNT + 1)) of at most $max_requeues; Slurm holds a requeued job about 2 minutes before" \
      "it starts again; torchrun's 'FAILED' report above is the ranks' planned exit 75, not an error)" >&2
    scontrol requeue "$SLURM_JOB_ID"
    exit 0 ;;
  interrupted)
    echo "$SL_NAME: the ranks were interrupted (SIGINT) and checkpointed at step $at; not requeued: $resume" >&2
    exit 130 ;;
esac
echo "$SL_NAME: training failed (step exit $rc; ranks' status for this run: ${state:-none})" >&2
exit $((rc ? rc : 1))
