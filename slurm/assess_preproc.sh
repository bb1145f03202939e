#!/usr/bin/env bash
#SBATCH --job-name=sure2-assess
#SBATCH --partition=preproc
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16
#SBATCH --mem-per-cpu=1900M
#SBATCH --time=12:00:00
#SBATCH --open-mode=append
#SBATCH --output=sure2-assess-%j.out
#
# Sure2 assessments on the preproc partition: one node per job, shared with other jobs, within its
# limits (one node, at most 16 running jobs per user, a day). For small batches, re-runs of a few
# fields, or when the normal partition's 4-node minimum would sit idle; a whole season is faster on
# normal (slurm/assess_normal.sh).
#
#   SURE2_IMAGE=build/sure2.sif bash slurm/assess_preproc.sh [SBATCH_OPTION...]
#   SURE2_IMAGE=build/sure2.sif bash slurm/assess_preproc.sh --array=1-8%8    # 8 jobs share one list
#
# Run with bash (not sbatch) to check the profile's partition rules first (an array must be throttled
# to <= 16 running tasks), then submit. Every job (or array task) runs the batch over the same list;
# the batch's claims give each field to exactly one of them, and a resubmission does only what is left.
#
#   SURE2_IMAGE, ASSESS_FIELDS, CLUSTER_PROFILE, BIND_OUT, BIND_TMP: as in assess_normal.sh
#   (memory: the job's own --mem-per-cpu/--mem, which preproc accepts)
set -euo pipefail
SL_NAME=assess_preproc.sh

if [ -z "${SLURM_JOB_ID:-}" ]; then
  source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  sl_submit "${BASH_SOURCE[0]}" "$@"
  exit
fi
source "${SLURM_WRAPPERS_DIR:-$SLURM_SUBMIT_DIR/slurm}/common.sh"

sl_sure2_setup
# The job asked for its memory (preproc allows --mem); the step inherits it.
sl_run srun --nodes=1 --ntasks=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
  "${SL_NODE_RUN[@]}" "${SL_EXEC[@]}" python -m app.batch run --data /data --out /out "${SL_FIELDS[@]}"
