#!/usr/bin/env bash
#SBATCH --job-name=sure2-assess-normal
#SBATCH --partition=normal
#SBATCH --nodes=4
#SBATCH --time=04:00:00
#SBATCH --signal=B:USR2@300
#SBATCH --open-mode=append
#SBATCH --output=sure2-assess-normal-%j.out
#
# A season of Sure2 assessments on the normal partition: whole nodes (4 or more), one container per
# node at a time, each running the batch with all of the node's physical cores.
#
#   SURE2_IMAGE=build/sure2.sif bash slurm/assess_normal.sh --account=nnXXXXk [SBATCH_OPTION...]
#
# Run with bash (not sbatch), from anywhere: it checks the profile's partition rules (an account is
# required), the image, the field list and the output bind first, then submits itself.
#
#   SURE2_IMAGE         sure2.sif (required): code and season data sealed inside
#   ASSESS_FIELDS       file of field IDs on the host (default: every field of the season)
#   ASSESS_CHUNK_SIZE   fields per step (default: sized from the work: up to 8 steps per node, so
#                       nodes that finish early take more and a cancelled step loses little, but at
#                       least 2 fields per CPU of a node, so a small season is not spent starting steps)
#   CLUSTER_PROFILE, BIND_OUT, BIND_TMP: see slurm/common.sh and profiles/
#
# How the work is divided: the batch's own planner (inside the image) lists the fields WITHOUT a valid
# output; this script splits that list into chunk files (OUT/.slurm-JOBID/chunk-NNNN.txt) and fills
# every node with `srun --exclusive --nodes=1 --ntasks=1 -c $SLURM_CPUS_ON_NODE --mem=0` steps, one
# chunk each, starting the next chunk whenever a step ends (`wait -n`). Each step asks for exactly what
# a node gives: all its CPUs as Slurm counts them (256 hyperthreads on Betzy) and all the job's memory
# on it (--mem=0: `-c 256 --mem-per-cpu=1950M` would be 487 GiB on a 244 GiB node, a step that never
# starts); the batch inside runs one worker per physical core (128 on Betzy). Two steps never share a
# node. Walltime: 300 s before the limit the steps get TERM, finish or drop their fields cleanly, and
# the log ends with "resubmit the same command to resume" (as after a scancel). The batch claims fields in its journal, so even overlapping runs never assess a field twice;
# resubmitting after a cancel, a crash or the time limit plans again and does only what is left.
set -euo pipefail
SL_NAME=assess_normal.sh

sl_preflight() { sl_sure2_inputs; }
if [ -z "${SLURM_JOB_ID:-}" ]; then
  source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  sl_submit "${BASH_SOURCE[0]}" "$@"
  exit
fi
sl_common=${SLURM_WRAPPERS_DIR:-$SLURM_SUBMIT_DIR/slurm}/common.sh
[ -f "$sl_common" ] || { echo "$SL_NAME: submit with 'bash PATH/TO/slurm/$SL_NAME', not sbatch" >&2; exit 2; }
source "$sl_common"

sl_sure2_setup
nodes=${SLURM_JOB_NUM_NODES:-$SLURM_NNODES}
cpus=${SLURM_CPUS_ON_NODE:-${SLURM_JOB_CPUS_PER_NODE%%[(,]*}}   # "256(x4)" -> 256: whole nodes, all alike
echo "$SL_NAME: job $SLURM_JOB_ID: $nodes node(s) x $cpus CPUs, image $(sl_image SURE2_IMAGE sure2.sif), out ${SL_HOST[out]}" >&2
sl_trap_stops
work="${SL_HOST[out]}/.slurm-$SLURM_JOB_ID"

# Plan on this (the first) node: fields without a valid output, in the season's spatial order.
if [ "${SLURM_DRY_RUN:-0}" = 1 ]; then
  sl_show "${SL_NODE_RUN[@]}" "${SL_EXEC[@]}" python -m app.batch plan --data /data --out /out "${SL_FIELDS[@]}"
  todo=$'F0001\nF0002'
else
  mkdir -p "$work"
  # plan exits 1 when the list names IDs that are not fields: it reports them and still lists the
  # good ones, which are done; the job then ends non-zero so the bad IDs are not missed.
  plan_rc=0
  todo=$("${SL_NODE_RUN[@]}" "${SL_EXEC[@]}" python -m app.batch plan --data /data --out /out "${SL_FIELDS[@]}") \
    || plan_rc=$?
  if [ -n "$SL_STOPPING" ]; then rm -rf "$work"; sl_exit_if_stopped; fi
  [ "$plan_rc" -le 1 ] || sl_die 3 "planning failed (see above)"
fi
# The season's report, once, over every field and all runs so far (the steps skip theirs): the job
# log ends with it, and OUT/.batch/ holds the JSON, the table, the payout map and the result layer.
season_report() {
  echo "$SL_NAME: the season's report (every field, all runs so far):" >&2
  sl_run "${SL_NODE_RUN[@]}" "${SL_EXEC[@]}" python -m app.batch report --data /data --out /out \
    || echo "$SL_NAME: the report lists fields that failed or were given up" >&2
}

total=$(grep -c . <<<"$todo" || true)
if [ "$total" -eq 0 ]; then
  echo "$SL_NAME: nothing to do: every requested field has a valid output" >&2
  rm -rf "$work"
  season_report
  exit "${plan_rc:-0}"
fi
# Sized from the work: up to 8 steps per node, each with at least 2 fields per CPU (4 per core where
# Slurm counts hyperthreads): a step costs a container start and imports, seconds; a field, milliseconds.
min_chunk=$((2 * cpus))
chunk=$(((total + nodes * 8 - 1) / (nodes * 8)))
((chunk >= min_chunk)) || chunk=$min_chunk
chunk=${ASSESS_CHUNK_SIZE:-$chunk}
[[ $chunk =~ ^[1-9][0-9]*$ ]] || sl_die 2 "ASSESS_CHUNK_SIZE must be a positive integer, not '$chunk'"
chunks=()
if [ "${SLURM_DRY_RUN:-0}" = 1 ]; then
  chunks=(chunk-0000.txt)
else
  grep . <<<"$todo" | split -l "$chunk" -d -a 4 --additional-suffix=.txt - "$work/chunk-"
  for f in "$work"/chunk-*.txt; do chunks+=("$(basename "$f")"); done
fi
echo "$SL_NAME: $total field(s) in ${#chunks[@]} step(s) of <= $chunk on $nodes node(s) x $cpus CPUs" >&2

# The job's memory variables would clash with the step's --mem=0 (srun reads them as options).
unset SLURM_MEM_PER_NODE SLURM_MEM_PER_CPU SLURM_MEM_PER_GPU
step() { # one chunk on one whole node: all its CPUs, all the job's memory there
  sl_run srun --exclusive --nodes=1 --ntasks=1 --cpus-per-task="$cpus" --mem=0 \
    --job-name="${1%.txt}" "${SL_NODE_RUN[@]}" "${SL_EXEC[@]}" \
    python -m app.batch run --data /data --out /out --fields "/out/.slurm-$SLURM_JOB_ID/$1" --no-report
}

failed=0 running=0
for c in "${chunks[@]}"; do
  [ -z "$SL_STOPPING" ] || break
  if ((running >= nodes)); then
    wait -n || failed=$((failed + 1))
    running=$((running - 1))
  fi
  [ -z "$SL_STOPPING" ] || break
  step "$c" &
  running=$((running + 1))
done
# every step, through stop signals (a trapped signal interrupts wait)
while [ -n "$(jobs -pr)" ]; do
  wait -n || failed=$((failed + 1))
done
if [ -n "$SL_STOPPING" ]; then
  rm -rf "$work"
  sl_exit_if_stopped
fi

season_report
[ "${SLURM_DRY_RUN:-0}" = 1 ] && exit 0
rm -rf "$work"
if ((failed)); then
  echo "$SL_NAME: $failed step(s) failed; resubmit to retry what is left (see the batch journal in ${SL_HOST[out]}/.batch)" >&2
  exit 1
fi
echo "$SL_NAME: done: ${#chunks[@]} step(s), $total field(s)" >&2
if ((${plan_rc:-0})); then
  echo "$SL_NAME: the field list named IDs that are not fields of the season (listed above)" >&2
  exit 1
fi
