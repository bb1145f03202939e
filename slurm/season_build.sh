#!/usr/bin/env bash
#SBATCH --job-name=season-build
#SBATCH --partition=preproc
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=16
#SBATCH --mem-per-cpu=1900M
#SBATCH --time=12:00:00
#SBATCH --signal=B:USR2@300
#SBATCH --open-mode=append
#SBATCH --output=season-build-%A_%a.out
#
# A Sure2 season from the insurer's field file and Sentinel-2 L2A scenes (STAC + local COGs), built
# inside season.sif: `python -m app.season build` (the host needs only bash, Apptainer and Slurm).
#
#   SEASON_IMAGE=build/season.sif SEASON_FIELDS=fields.gpkg SEASON_MAPPING=mapping.toml \
#     [SEASON_BASELINE=baseline.parquet] bash slurm/season_build.sh --account=nnXXXXk [--array=1-4] [SBATCH_OPTION...]
#
# Run with bash (not sbatch) to check the profile's partition rules (an account), the image, the input
# files and the scenes directory first, then submit. Logs: one per array task (%A_%a). Walltime: 300 s
# before the limit the build gets TERM and stops between stacks/dates; the log ends with "resubmit the
# same command to resume" (finished stacks are kept and skipped next time).
#
#   SEASON_IMAGE      season.sif (required)
#   SEASON_FIELDS     the field file on the host (its directory is bound: a Shapefile's sidecars come along)
#   SEASON_MAPPING    mapping.toml
#   The baseline (optional; without one, fields get no_baseline), one of:
#   SEASON_BASELINE   a ready baseline.parquet from `app.season baseline` (its history.parquet beside it)
#   SEASON_PAST       a directory of past season directories (built by this wrapper): the job's first
#                     step makes SEASON/.baseline/ from them (`app.season baseline --seasons`), once
#   SEASON_BASELINE_TABLE  your own table (CSV/Parquet: region_id, crop, doy, ndvi_mean, ndvi_std,
#                     n_samples): the first step makes SEASON/.baseline/ from it (`--table`), once
#   BIND_SCENES       the scenes directory (STAC item JSONs or an ItemCollection + COGs; hrefs relative
#                     to the JSONs), default: the profile's `scenes` bind
#   BIND_SEASON       the season directory to write (default: the profile's `season` bind)
#   SEASON_STAC       the STAC file or directory inside the scenes directory (default: all of it)
#   CLUSTER_PROFILE, BIND_TMP: see slurm/common.sh and profiles/
#
# Parallel over zones and dates: an array (`--array=1-N`, one node each on preproc) divides the season's
# NDVI stacks (one per UTM zone) among its tasks (`--part K/N`); inside a task the scenes (dates,
# granules) are read on every physical core, with temp files on RAM (the `tmp` bind). A finished stack
# is skipped when valid, so a resubmission after a cancel or the time limit does only what is left.
# Whichever task finds every stack valid writes fields.parquet, baseline.parquet and, last, season.json.
set -euo pipefail
SL_NAME=season_build.sh

# Checked before sbatch and again in the job.
season_inputs() {
  sl_image SEASON_IMAGE season.sif >/dev/null || exit
  local var
  [ -n "${SEASON_FIELDS:-}" ] || sl_die 2 "set SEASON_FIELDS to the insurer's field file"
  [ -n "${SEASON_MAPPING:-}" ] || sl_die 2 "set SEASON_MAPPING to the mapping.toml"
  for var in SEASON_FIELDS SEASON_MAPPING SEASON_BASELINE SEASON_BASELINE_TABLE; do
    [ -z "${!var:-}" ] || [ -f "${!var}" ] || sl_die 2 "$var ${!var} does not exist"
  done
  local given=0
  for var in SEASON_BASELINE SEASON_PAST SEASON_BASELINE_TABLE; do [ -z "${!var:-}" ] || given=$((given + 1)); done
  ((given <= 1)) || sl_die 2 "give one of SEASON_BASELINE, SEASON_PAST, SEASON_BASELINE_TABLE, not several"
  if [ -n "${SEASON_PAST:-}" ]; then
    compgen -G "$SEASON_PAST/*/season.json" >/dev/null \
      || sl_die 2 "SEASON_PAST $SEASON_PAST holds no past season directories (each with a season.json)"
    [[ $(realpath "$SEASON_PAST") != *[:,]* ]] || sl_die 2 "SEASON_PAST contains ':' or ',', which apptainer --bind cannot express"
  fi
  local scenes
  scenes=$(sl_bind scenes | cut -f1) || exit
  [ -d "$scenes" ] || sl_die 2 "the scenes directory $scenes does not exist (set BIND_SCENES)"
}
sl_preflight() { season_inputs; }
if [ -z "${SLURM_JOB_ID:-}" ]; then
  source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
  sl_submit "${BASH_SOURCE[0]}" "$@"
  exit
fi
sl_common=${SLURM_WRAPPERS_DIR:-$SLURM_SUBMIT_DIR/slurm}/common.sh
[ -f "$sl_common" ] || { echo "$SL_NAME: submit with 'bash PATH/TO/slurm/$SL_NAME', not sbatch" >&2; exit 2; }
source "$sl_common"

[ "${SLURM_DRY_RUN:-0}" = 1 ] || season_inputs
image=$(sl_image SEASON_IMAGE season.sif)
sl_bind_args scenes season
[ "${SLURM_DRY_RUN:-0}" = 1 ] || mkdir -p "${SL_HOST[season]}"
sl_bind_input SEASON_FIELDS /in/fields dir
args=(build --fields "$SL_INPUT")
sl_bind_input SEASON_MAPPING /in/mapping.toml
args+=(--mapping "$SL_INPUT" --scenes "/scenes${SEASON_STAC:+/$SEASON_STAC}" --out /season)
# The baseline: given, or made by a first step into SEASON/.baseline (skipped once it exists; array
# tasks that race both write the same files atomically).
baseline_step=()
if [ -n "${SEASON_BASELINE:-}" ]; then
  sl_bind_input SEASON_BASELINE /in/baseline.parquet
  args+=(--baseline "$SL_INPUT")
elif [ -n "${SEASON_PAST:-}" ]; then
  SL_BINDS+=(--bind "$(realpath "$SEASON_PAST"):/in/past:ro")
  baseline_step=(baseline --seasons)
  for past in "$SEASON_PAST"/*/season.json; do baseline_step+=("/in/past/$(basename "$(dirname "$past")")"); done
elif [ -n "${SEASON_BASELINE_TABLE:-}" ]; then
  sl_bind_input SEASON_BASELINE_TABLE "/in/$(basename "$SEASON_BASELINE_TABLE")"
  baseline_step=(baseline --table "$SL_INPUT")
fi
if ((${#baseline_step[@]})); then
  baseline_step+=(--out /season/.baseline)
  args+=(--baseline /season/.baseline/baseline.parquet)
  [ -f "${SL_HOST[season]}/.baseline/baseline.json" ] && baseline_step=()
fi
# Array task K of N builds stacks K, K+N, ... (task ids need not start at 1)
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  args+=(--part "$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-1} + 1))/${SLURM_ARRAY_TASK_COUNT:-1}")
fi
SL_EXEC=(apptainer run --containall --cleanenv "${SL_BINDS[@]}" "$image")
sl_node_run_cmd "SLURM_STEP_ID SLURM_CPUS_PER_TASK SLURMD_NODENAME"
echo "$SL_NAME: job $SLURM_JOB_ID${SLURM_ARRAY_TASK_ID:+ (array task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT)}:" \
  "${SLURM_CPUS_PER_TASK:-1} CPUs, image $image, season ${SL_HOST[season]}" >&2
sl_trap_stops
rc=0
for step in baseline build; do
  if [ "$step" = baseline ]; then
    ((${#baseline_step[@]})) || continue
    step_args=("${baseline_step[@]}")
  else
    step_args=("${args[@]}")
  fi
  sl_run srun --nodes=1 --ntasks=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
    "${SL_NODE_RUN[@]}" "${SL_EXEC[@]}" "${step_args[@]}" &
  sl_wait $! || rc=$?
  sl_exit_if_stopped
  ((rc == 0)) || { echo "$SL_NAME: the $step step failed (exit $rc)" >&2; exit "$rc"; }
done
