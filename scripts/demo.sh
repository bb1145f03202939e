#!/usr/bin/env bash
# The README's main job, on a fresh Debian 12/13 as root, through the real input path:
#   1. raw inputs with ground truth: Sentinel-2 L2A scenes as users download them (STAC items + COGs,
#      three granules in UTM zones 32/33, 37 dates) and an insurer's field file as a Norwegian insurer
#      exports it (GeoPackage, EPSG:25833, SKIFTE_ID with '/', DD.MM.YYYY text dates, percentile terms,
#      200 fields + awkward rows, slivers, fields sown early or late), its mapping.toml, a baseline table
#      and a history table (app.season raw --variant insurer);
#   2. the season built from them INSIDE season.sif (`app.season baseline --table`, `app.season build`);
#   3. sure2.sif built with that season embedded (build.py sure2 --data);
#   4. one field through `apptainer run`, then the whole season as a resumable batch inside the image;
#   5. the payouts compared with the truth, every row of the insurer's file reconciled with an outcome.
# Outputs under demo/ (override: DEMO_DIR): raw/, season/, out/<FIELD_ID>.parquet. Rerunning resumes:
# the inputs are kept, valid stacks and valid field outputs are not made again.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/install-apptainer.sh
.venv/bin/python build.py season

demo=$(realpath -m "${DEMO_DIR:-demo}")
raw=$demo/raw season=$demo/season out=$demo/out
mkdir -p "$demo" "$season" "$out"
if [ ! -f "$raw/truth.parquet" ]; then
  echo "demo: generating raw inputs with truth in $raw"
  rm -rf "$raw.partial"
  .venv/bin/python -m app.season raw --out "$raw.partial" --fields 200 --tile 1024 --block 512 --dates 37 --seed 1 \
    --variant insurer
  mv "$raw.partial" "$raw"
fi

echo "demo: importing the field file and the scenes inside season.sif"
builder=(apptainer -s run --containall --cleanenv --bind "$raw:/in:ro" --bind "$season:/season" build/season.sif)
"${builder[@]}" baseline --table /in/baseline_table.csv --history /in/history_table.csv --out /season/.baseline
"${builder[@]}" build --fields /in/fields.gpkg --mapping /in/mapping.toml --scenes /in/scenes \
  --baseline /season/.baseline/baseline.parquet --out /season

.venv/bin/python build.py sure2 --data "$season"
image=build/sure2.sif
contain=(--containall --cleanenv --bind "$out:/out")
first=$(apptainer -s exec "${contain[@]}" "$image" python -I -c \
  'import pyarrow.parquet as pq; print(sorted(pq.read_table("/data/fields.parquet", columns=["field_id"])["field_id"].to_pylist())[0])')
echo "demo: one field:  apptainer run --containall --cleanenv --bind $out:/out $image $first"
apptainer -s run "${contain[@]}" "$image" "$first"

echo "demo: the whole embedded season as a batch inside the image (2 cores here; resumable)"
apptainer -s exec "${contain[@]}" "$image" python -m app.batch run --backend inproc --data /data --out /out

# The raw inputs carry the truth (truth.parquet, by the insurer's IDs): how close did the assessment come,
# and does every row of the insurer's file have an outcome?
apptainer -s exec "${contain[@]}" --bind "$raw/truth.parquet:/in/truth.parquet:ro" "$image" python -I - <<'PY'
from collections import Counter
import pyarrow.parquet as pq
truth_rows = pq.read_table("/in/truth.parquet").to_pylist()
truth = {t["source_id"]: t for t in truth_rows}
result = pq.read_table("/out/.batch/season_result.parquet").to_pylist()
outcomes = Counter(r["outcome"] for r in result)
print(f"demo: the insurer's file: {len(truth_rows)} rows in, {len(result)} outcomes out: "
      + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())))
assessed = [r for r in result if r["outcome"] == "assessed"]
agree = sum((r["payout"] > 0) == (truth[r["source_id"]]["true_payout_fraction"] > 0) for r in assessed)
error = sum(abs(r["index_value"] - truth[r["source_id"]]["true_index"]) for r in assessed) / max(1, len(assessed))
print(f"demo: vs ground truth: payout decision right for {agree}/{len(assessed)} assessed fields; "
      f"mean |loss index - true| {error:.3f}")
due = lambda r: truth[r["source_id"]]["true_payout_fraction"] > 0 and not r["source_id"].startswith("KV-SLIVER")
for kind, pick in (("percentile-term", lambda t: t["terms"] == "percentile"),
                   ("shifted healthy (sown early/late)", lambda t: t["shift_days"] != 0),
                   ("sliver (never to be paid)", lambda t: t["source_id"].startswith("KV-SLIVER"))):
    rows = [r for r in result if r["source_id"] in truth and pick(truth[r["source_id"]]) and r["outcome"] != "refused"]
    paid = sum(bool(r["payout"]) for r in rows)
    wrong = sum(bool(r["payout"]) != due(r) for r in rows if r["outcome"] == "assessed")
    print(f"demo:   {kind} fields: {len(rows)}, paid {paid}, payout decision wrong for {wrong}")
print("demo: not assessed (explained or refused):")
for r in result:
    if r["outcome"] != "assessed":
        print(f"demo:   {r['source_id']}: {r['outcome']} ({r['reason']})")
PY

echo "demo: $(find "$out" -maxdepth 1 -name '*.parquet' | wc -l) field outputs in $out;" \
  "report: $out/.batch/report.txt; season audit: $season/season.json; image labels:"
apptainer -s inspect --labels "$image" | grep -E '^(code\.version|data\.fingerprint):'
