#!/usr/bin/env bash
#SBATCH --job-name=sure2-assess-preproc
#SBATCH --partition=preproc
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16
#SBATCH --mem-per-cpu=1900M
#SBATCH --time=12:00:00
#SBATCH --signal=B:USR2@300
#SBATCH --open-mode=append
#SBATCH --output=sure2-assess-preproc-%A_%a.out
#
# Sure2 assessments on the preproc partition: one node per job, shared with other jobs, within its
# limits (one node, at most 16 running jobs per user, a day). For small batches, re-runs of a few
# fields, or when the normal partition's 4-node minimum would sit idle; a whole season is faster on
# normal (slurm/assess_normal.sh).
#
#   SURE2_IMAGE=build/sure2.sif bash slurm/assess_preproc.sh --account=nnXXXXk [SBATCH_OPTION...]
#   SURE2_IMAGE=build/sure2.sif bash slurm/assess_preproc.sh --account=nnXXXXk --array=1-8%8   # 8 jobs
#
# Run with bash (not sbatch) to check the profile's partition rules first (an account; an array must
# be throttled to <= 16 running tasks), the image and the field list, then submit. Every job (or array
# task) runs the same command over the same list (N identical copies); how they divide the work is the
# batch's decision (app.hpc.filesystems: claims where the output filesystem's locks are coherent across
# nodes, else disjoint shares), and a resubmission does only what is left. Logs: one per array task
# (%A_%a); walltime: as in assess_normal.sh.
#
#   SURE2_IMAGE, ASSESS_FIELDS, CLUSTER_PROFILE, BIND_OUT, BIND_TMP: as in assess_normal.sh
#   (memory: the job's own --mem-per-cpu/--mem, which preproc accepts)
set -euo pipefail
SL_NAME=assess_preproc.sh

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
echo "$SL_NAME: job $SLURM_JOB_ID${SLURM_ARRAY_TASK_ID:+ (array task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT)}:" \
  "${SLURM_CPUS_PER_TASK:-1} CPUs, image $(sl_image SURE2_IMAGE sure2.sif), out ${SL_HOST[out]}" >&2
sl_trap_stops
# The job asked for its memory (preproc requires --mem-per-cpu); the step inherits it.
sl_run srun --nodes=1 --ntasks=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
  "${SL_NODE_RUN[@]}" "${SL_EXEC[@]}" python -m app.batch run --data /data --out /out "${SL_FIELDS[@]}" &
rc=0; sl_wait $! || rc=$?
sl_exit_if_stopped
exit "$rc"
