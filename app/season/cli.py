"""`python -m app.season synth|build|fetch|baseline|raw ...`: make a season directory (see app.season)."""

import json
import os

from app.errors import EXIT_OK, BadInput, UsageParser, guarded
from app.fetch.run import add_arguments, failed_exit
from app.fetch.stac import PRESETS
from app.season.scene_ndvi import DEFAULT_MASKED

PROG = "python -m app.season"


def build_parser():
    p = UsageParser(prog=PROG, description="Build a Sure2 season directory")
    sub = p.add_subparsers(dest="command", required=True, parser_class=UsageParser)
    s = sub.add_parser("synth", help="generate a season with ground truth (contract level, for tests and demos)")
    s.add_argument("--fields", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)

    b = sub.add_parser("build", help="a season from the insurer's field file and Sentinel-2 L2A scenes (STAC)")
    b.add_argument("--fields", required=True, help="GPKG, Shapefile (.shp or zipped .zip), GeoJSON, FlatGeobuf or GeoParquet")
    b.add_argument("--mapping", required=True, help="mapping.toml: source columns → contract (see app.season.mapping)")
    b.add_argument("--scenes", required=True, help="STAC ItemCollection JSON, item JSON, or a directory of item JSONs")
    b.add_argument("--out", required=True, help="the season directory (created; rerun resumes)")
    b.add_argument("--baseline", help="baseline.parquet from `app.season baseline` (a CSV table: run `app.season "
                   "baseline --table FILE.csv --out DIR` first); its history.parquet beside it comes along "
                   "(percentile terms are priced on it); default: none, fields get no_baseline")
    b.add_argument("--layer", help="the layer of a multi-layer field file (or `layer` in the mapping)")
    b.add_argument("--mask-scl", default=",".join(map(str, DEFAULT_MASKED)),
                   help="SCL classes that make a pixel nodata (default %(default)s)")
    b.add_argument("--part", default="1/1", help="K/N: build only stacks K, K+N, ... (Slurm array tasks); default 1/1")
    b.add_argument("--workers", type=int, help="reader threads (default: physical cores)")
    b.add_argument("--strict", action="store_true",
                   help="an imported field with an empty contract value stops the build (exit 2, nothing written)")

    bl = sub.add_parser("baseline", help="baseline.parquet from past seasons (+ history.parquet) or a user table")
    src = bl.add_mutually_exclusive_group(required=True)
    src.add_argument("--seasons", nargs="+", help="past season directories built by `app.season build`")
    src.add_argument("--table", help="a user table (CSV or Parquet): region_id, crop, doy, ndvi_mean, ndvi_std, n_samples")
    bl.add_argument("--history", help="with --table: a history table (CSV or Parquet): region_id, crop, year, doy, "
                    "ndvi_mean, the unit's mean curve per past year; percentile terms are priced on it")
    bl.add_argument("--out", required=True, help="directory for baseline.parquet (+ history.parquet, baseline.json)")
    bl.add_argument("--min-years", type=int, default=5, help="years of history a region x crop needs (default 5)")
    bl.add_argument("--lambda", dest="lam", type=float, default=10.0, help="Whittaker smoothing (default 10)")

    f = sub.add_parser("fetch", help="Sentinel-2 L2A items from a STAC API: only the COG tiles the build reads "
                       "(login/transfer node; see app.season.fetch)")
    f.add_argument("--fields", required=True, help="the insurer's field file (with --mapping) or a built season directory")
    f.add_argument("--mapping", help="mapping.toml (as for build): which fields the build keeps decides the blocks")
    f.add_argument("--layer", help="the layer of a multi-layer field file")
    f.add_argument("--out", required=True, help="SCENES directory: SCENES/<year>/collection.json (rerun resumes)")
    f.add_argument("--collection", default="sentinel-2-l2a", help="default %(default)s")
    f.add_argument("--years", help="YEAR, A-B or A,B,C (default: the mapping's season_year); past years feed "
                   "`app.season baseline --seasons`")
    f.add_argument("--window", default="04-01/10-31", help="MM-DD/MM-DD of each year (default %(default)s)")
    f.add_argument("--max-cloud", type=float, help="skip items whose eo:cloud_cover is above this percentage")
    f.add_argument("--sign", choices=["planetary-computer"], help="sign asset hrefs (Planetary Computer SAS token)")
    add_arguments(f, PRESETS["earth-search"]["url"])

    r = sub.add_parser("raw", help="generate raw inputs with truth: S2 L2A scenes (STAC + COGs) and a field file")
    r.add_argument("--out", required=True)
    r.add_argument("--fields", type=int, default=30, help="regular fields (plus the awkward rows)")
    r.add_argument("--tile", type=int, default=384, help="granule size in 10 m pixels")
    r.add_argument("--dates", type=int, default=37, help="acquisitions per orbit (every 5 days from April)")
    r.add_argument("--block", type=int, default=256, help="COG block size of the 10 m bands")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--year", type=int, default=2025, help="the season's year (past seasons for a baseline)")
    r.add_argument("--variant", choices=("register", "insurer"), default="register",
                   help="the field file: register (default) or insurer (Norwegian export: SKIFTE_ID with '/', "
                        "BYGG/HVETE/HAVRE/POTET, DD.MM.YYYY text dates, AREAL_DAA, FORS_SUM, percentile terms, "
                        "slivers, fields sown early or late)")
    return p


def synth_command(args) -> int:
    from app.season.synth import generate

    if not 1 <= args.fields <= 1_000_000:
        raise BadInput("--fields must be between 1 and 1000000")
    print(json.dumps(generate(args.fields, args.seed, args.out)))
    return EXIT_OK


def _masked(text: str) -> tuple:
    try:
        classes = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise BadInput(f"--mask-scl must be comma-separated SCL classes (0-11), not {text!r}") from None
    if any(not 0 <= c <= 11 for c in classes):
        raise BadInput(f"--mask-scl: SCL classes are 0-11, not {text!r}")
    return classes


def _part(text: str) -> tuple:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise BadInput(f"--part must be K/N (e.g. 2/4), not {text!r}") from None
    if not 1 <= k <= n:
        raise BadInput(f"--part {text}: need 1 <= K <= N")
    return k, n


def build_command(args) -> int:
    from app.season.builder import build_season

    if args.workers is not None and args.workers < 1:
        raise BadInput("--workers must be at least 1")
    summary = build_season(args.fields, args.mapping, args.scenes, args.out, args.baseline, args.layer,
                           _masked(args.mask_scl), _part(args.part), args.workers, strict=args.strict)
    print(json.dumps(summary))
    return EXIT_OK


def fetch_command(args) -> int:
    from app.season.fetch import fetch_season

    summary, failed = fetch_season(args)
    print(json.dumps(summary))
    return failed_exit(f"{PROG} fetch", failed)


def baseline_command(args) -> int:
    from app.season import baseline

    if args.table:
        summary = baseline.from_table(args.table, args.out, args.history)
    else:
        if args.history:
            raise BadInput("--history goes with --table (from --seasons the history is measured)")
        if args.min_years < 1 or args.lam <= 0:
            raise BadInput("--min-years must be >= 1 and --lambda > 0")
        missing = [d for d in args.seasons if not os.path.isfile(os.path.join(d, "season.json"))]
        if missing:
            raise BadInput(f"not a season directory (no season.json): {', '.join(missing)}")
        summary = baseline.from_seasons(args.seasons, args.out, args.min_years, args.lam)
    print(json.dumps(summary))
    return EXIT_OK


def raw_command(args) -> int:
    from app.season.raw_inputs import generate

    if not 1 <= args.fields <= 100_000 or args.tile < 64 or args.dates < 1:
        raise BadInput("--fields 1..100000, --tile >= 64, --dates >= 1")
    try:
        print(json.dumps(generate(args.out, args.fields, args.tile, args.dates, args.seed, args.block,
                                  year=args.year, variant=args.variant)))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return EXIT_OK


COMMANDS = {"synth": synth_command, "build": build_command, "fetch": fetch_command, "baseline": baseline_command,
            "raw": raw_command}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return guarded("season", COMMANDS[args.command], args)
