"""The season's area-unit results: OUT/.batch/units.parquet, one row per unit contract, and units.txt.

For every contract in the season's units.parquet (app.sure2.units): the unit's fields are the
catalogue's fields of its region × crop; those assessed (valid outputs) give their curves (`date`,
`ndvi_smooth`, `baseline_mean`, taken from the report's one read of each output: app.batch.output_pass)
and areas, and app.sure2.units.assess_units makes the units' index and payout. A unit depends on all of
its fields' outputs, so it is made again with every report, written once per unit in one file. A season without unit contracts gets
no file.
"""

from collections import defaultdict

from app.hpc.atomic import atomic_path, atomic_write_bytes

PAYOUT_COLUMNS = {"index": "string", "terms": "string", "index_value": "float64", "trigger": "float64",
                  "exit": "float64", "trigger_percentile": "float64", "exit_percentile": "float64",
                  "percentile": "float64", "history_years": "int32", "fraction": "float64",
                  "insured_sum_cents": "int64", "amount_cents": "int64", "amount": "float64", "currency": "string"}
UNIT_COLUMNS = {"unit_id": "string", "region_id": "string", "crop": "string", "status": "string", "reason": "string",
                "detail": "string", "n_fields": "int32", "n_assessed": "int32", "area_ha": "float64",
                "assessed_area_ha": "float64"}


def schema():
    import pyarrow as pa  # pyarrow after the batch's thread caps

    return pa.schema([*((n, pa.type_for_alias(t)) for n, t in {**UNIT_COLUMNS, **PAYOUT_COLUMNS}.items()),
                      ("dates", pa.list_(pa.date32())), ("ndvi_smooth", pa.list_(pa.float64())),
                      ("baseline_mean", pa.list_(pa.float64()))])


def write_unit_results(season, curves: dict, layout) -> tuple[str, list]:
    """Write units.parquet and units.txt from the assessed fields' curves (field -> FieldCurve, read once by
    app.batch.output_pass); return (a note, the units' records)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.sure2.units import assess_units

    results = assess_units(season, curves)
    if not results:
        return "no area-unit contracts in this season", []
    records = [{**{k: v for k, v in r.items() if k != "payout"}, **{k: (r["payout"] or {}).get(k) for k in PAYOUT_COLUMNS}}
               for r in results]
    parquet, text = layout.root / "units.parquet", layout.root / "units.txt"
    with atomic_path(parquet) as tmp:
        pq.write_table(pa.Table.from_pylist(records, schema=schema()), tmp)
    atomic_write_bytes(text, render(records).encode())
    paid = [r for r in records if r["amount_cents"]]
    totals = defaultdict(int)
    for r in paid:
        totals[r["currency"]] += r["amount_cents"]
    money = ", ".join(f"{cur} {cents / 100:,.2f}" for cur, cents in sorted(totals.items())) or "nothing"
    return f"area units {parquet} ({len(records)} units, {len(paid)} paid, {money})", records


def render(records: list) -> str:
    lines = [f"{'unit':32s} {'status':18s} {'fields':>9s} {'index':>8s} {'pctile':>7s} {'payout':>14s}"]
    for r in records:
        index = f"{r['index_value']:.4f}" if r["index_value"] is not None else "-"
        pct = f"{r['percentile']:.1f}" if r["percentile"] is not None else "-"
        pay = f"{r['amount']:,.2f} {r['currency']}" if r["amount"] is not None else r["reason"]
        lines.append(f"{r['unit_id']:32s} {r['status']:18s} {r['n_assessed']:>4d}/{r['n_fields']:<4d} {index:>8s} "
                     f"{pct:>7s} {pay:>14s}")
    return "\n".join(lines) + "\n"
