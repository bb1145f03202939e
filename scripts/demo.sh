#!/usr/bin/env bash
# The README's main job, on a fresh Debian 12/13 as root: set-up, Apptainer, sure2.sif with the demo
# season embedded (200 generated fields, seed 1), then that season assessed as a resumable batch
# INSIDE the sealed image, with a summary. Outputs: demo/out/<FIELD_ID>.parquet (override: DEMO_OUT).
# Rerunning resumes: fields with a valid output are not assessed again.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/install-apptainer.sh
.venv/bin/python build.py sure2

out=$(realpath -m "${DEMO_OUT:-demo/out}")
mkdir -p "$out"
image=build/sure2.sif
contain=(--containall --cleanenv --bind "$out:/out")

first=$(apptainer -s exec "${contain[@]}" "$image" python -I -c \
  'import pyarrow.parquet as pq; print(pq.read_table("/data/fields.parquet", columns=["field_id"])["field_id"][0])')
echo "demo: one field:  apptainer run --containall --cleanenv --bind $out:/out $image $first"
apptainer -s run "${contain[@]}" "$image" "$first"

echo "demo: the whole embedded season as a batch inside the image (2 cores here; resumable)"
apptainer -s exec "${contain[@]}" "$image" \
  python -m app.batch run --backend inproc --data /data --out /out

# The demo season is generated with known damage (truth.parquet): say how close the assessment came.
apptainer -s exec "${contain[@]}" "$image" python -I - <<'PY'
import pyarrow.parquet as pq
from app.sure2.output import read_blobs
truth = pq.read_table("/data/truth.parquet").to_pylist()
paid = {t["field_id"]: read_blobs(f"/out/{t['field_id']}.parquet")["payout"]["amount"] for t in truth}
agree = sum((paid[t["field_id"]] > 0) == (t["true_payout"] > 0) for t in truth)
print(f"demo: vs ground truth: payout decision right for {agree}/{len(truth)} fields; total paid "
      f"{sum(paid.values()):,.0f} NOK, true {sum(t['true_payout'] for t in truth):,.0f} NOK")
PY

echo "demo: $(find "$out" -maxdepth 1 -name '*.parquet' | wc -l) field outputs in $out;" \
  "report: $out/.batch/report.txt; image labels:"
apptainer -s inspect --labels "$image" | grep -E '^(code\.version|data\.fingerprint):'
