"""`python -m app.emb synth|fetch|prepare|predict ...` (training: `python -m app.emb.train` / torchrun)."""

import sys

from app.errors import UsageParser
from app.errors import EXIT_OK, BadInput, guarded
from app.fetch.run import add_arguments, failed_exit


def _zones(text: str) -> tuple:
    try:
        return tuple(int(z) for z in text.split(","))
    except ValueError:
        raise BadInput(f"--zones must be comma-separated UTM zone numbers, got {text!r}") from None


def _parser() -> UsageParser:
    p = UsageParser(prog="python -m app.emb", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=UsageParser)

    s = sub.add_parser("synth", help="generated published-format embedding tiles + parcels with crop codes + class map")
    s.add_argument("--out", required=True)
    s.add_argument("--tiles", type=int, default=2)
    s.add_argument("--size", type=int, default=256, help="tile side in pixels (10 m)")
    s.add_argument("--classes", type=int, default=5, help="classes including non-crop 0")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--zones", default="33", help="UTM zones, comma-separated; tiles take them in turn")

    r = sub.add_parser("prepare", help="tiles + parcels + class map → a few large shards per split")
    r.add_argument("--src", required=True, help="directory of 64-band embedding GeoTIFFs")
    r.add_argument("--parcels", required=True, help="parcel file: GPKG, SHP, zipped SHP, GeoJSON, FGB, GeoParquet")
    r.add_argument("--layer", default=None, help="layer of a multi-layer parcel file")
    r.add_argument("--class-map", required=True, help="TOML: crop code → class id (see app/emb/labels.py)")
    r.add_argument("--code-column", default=None, help="overrides the class map's code_column")
    r.add_argument("--unmapped", choices=["ignore", "non-crop"], default=None,
                   help="overrides the class map's policy for codes it does not list")
    r.add_argument("--out", required=True)
    r.add_argument("--chip", type=int, default=256)
    r.add_argument("--stride", type=int, default=None, help="default: --chip (no overlap)")
    r.add_argument("--block", type=int, default=2048, help="spatial split block side, pixels")
    r.add_argument("--val-frac", type=float, default=0.2)
    r.add_argument("--shard-chips", type=int, default=0, help="chips per shard; 0 = ~1 GiB shards")
    r.add_argument("--seed", type=int, default=0)

    f = sub.add_parser("fetch", help="the Satellite Embedding tiles' COG blocks a parcel file needs, from a STAC API "
                       "(login/transfer node; see app.emb.fetch)")
    f.add_argument("--parcels", required=True, help="parcel file (any format prepare reads)")
    f.add_argument("--layer", default=None, help="layer of a multi-layer parcel file")
    f.add_argument("--year", type=int, required=True)
    f.add_argument("--collection", required=True, help="the embedding collection in the catalogue")
    f.add_argument("--out", required=True, help="directory for the tiles (prepare's --src); rerun resumes")
    f.add_argument("--chip", type=int, default=256, help="prepare's --chip (default %(default)s)")
    f.add_argument("--stride", type=int, default=None, help="prepare's --stride (default: --chip)")
    add_arguments(f)

    d = sub.add_parser("predict", help="block-streamed sliding-window inference → uint8 class-map GeoTIFF")
    d.add_argument("--checkpoint", required=True, help="checkpoint file or run directory (newest valid)")
    d.add_argument("--input", required=True, help="64-band embedding GeoTIFF")
    d.add_argument("--out", required=True)
    d.add_argument("--overlap", type=float, default=0.25, help="window overlap fraction, 0..0.9")
    d.add_argument("--batch", type=int, default=8)
    d.add_argument("--confidence", action="store_true",
                   help="add band 2: mean probability of the chosen class x 254 (255 = nodata)")
    return p


def run(args) -> int:
    if args.command == "synth":
        from app.emb.synth import SynthSpec, synth

        paths = synth(args.out, SynthSpec(args.tiles, args.size, args.classes, args.seed, _zones(args.zones)))
        print(f"synth: wrote {len(paths)} files to {args.out}")
    elif args.command == "prepare":
        from app.emb.prepare import LabelSpec, PrepareSpec, prepare

        stride = args.chip if args.stride is None else args.stride
        spec = PrepareSpec(args.chip, stride, args.block, args.val_frac, args.shard_chips, args.seed)
        labels = LabelSpec(args.parcels, args.class_map, args.layer, args.code_column, args.unmapped)
        result = prepare(args.src, args.out, spec, labels)
        _print_prepare(result)
    elif args.command == "fetch":
        import json

        from app.emb.fetch import fetch_embeddings

        summary, failed = fetch_embeddings(args)
        print(json.dumps(summary))
        return failed_exit("python -m app.emb fetch", failed)
    else:
        from app.emb.predict import predict

        predict(args.checkpoint, args.input, args.out, args.overlap, args.batch, args.confidence)
        print(f"predict: wrote {args.out}")
    return EXIT_OK


def _print_prepare(result: dict) -> None:
    report = result["report"]
    parcels = report["parcels"]
    chips = report["chips"]
    print(f"prepare: {chips['train']} train + {chips['val']} val chips; shards written "
          f"{len(result['written'])}, already valid {len(result['skipped'])}")
    print(f"prepare: {parcels['features']} parcels: by class {parcels['parcels_by_class']}, "
          f"ignored {parcels['ignored_parcels']}; unmapped {parcels['unmapped']['parcels']} parcels with "
          f"{parcels['unmapped']['codes']} codes (→ {parcels['unmapped_policy']}); repaired "
          f"{parcels['repaired']['parcels']}, dropped {parcels['dropped']['parcels']} (details: report.json)")
    if not chips["val"]:
        print("prepare: no validation chips: training will report no validation scores")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return guarded(f"{args.command}: error", run, args)


if __name__ == "__main__":
    sys.exit(main())
