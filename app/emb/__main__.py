"""`python -m app.emb synth|prepare|predict ...` (training: `python -m app.emb.train` / torchrun)."""

import sys

from app.emb.config import ArgParser
from app.errors import EXIT_OK, BadInput, EnvironmentFailure, exit_status


def _parser() -> ArgParser:
    p = ArgParser(prog="python -m app.emb", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgParser)

    s = sub.add_parser("synth", help="generated embedding GeoTIFFs + parcels GeoParquet with known classes")
    s.add_argument("--out", required=True)
    s.add_argument("--tiles", type=int, default=2)
    s.add_argument("--size", type=int, default=256, help="tile side in pixels (10 m)")
    s.add_argument("--classes", type=int, default=5, help="classes including non-crop 0")
    s.add_argument("--seed", type=int, default=0)

    r = sub.add_parser("prepare", help="tiles + parcels → a few large shards per split")
    r.add_argument("--src", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--chip", type=int, default=256)
    r.add_argument("--stride", type=int, default=None, help="default: --chip (no overlap)")
    r.add_argument("--block", type=int, default=2048, help="spatial split block side, pixels")
    r.add_argument("--val-frac", type=float, default=0.2)
    r.add_argument("--shard-chips", type=int, default=0, help="chips per shard; 0 = ~1 GiB shards")
    r.add_argument("--seed", type=int, default=0)

    d = sub.add_parser("predict", help="sliding-window inference → uint8 class-map GeoTIFF")
    d.add_argument("--checkpoint", required=True, help="checkpoint file or run directory (newest valid)")
    d.add_argument("--input", required=True, help="64-band embedding GeoTIFF")
    d.add_argument("--out", required=True)
    d.add_argument("--overlap", type=float, default=0.25, help="window overlap fraction, 0..0.9")
    d.add_argument("--batch", type=int, default=8)
    return p


def run(args) -> None:
    if args.command == "synth":
        from app.emb.synth import SynthSpec, synth

        paths = synth(args.out, SynthSpec(args.tiles, args.size, args.classes, args.seed))
        print(f"synth: wrote {len(paths)} files to {args.out}")
    elif args.command == "prepare":
        from app.emb.prepare import PrepareSpec, prepare

        stride = args.chip if args.stride is None else args.stride
        spec = PrepareSpec(args.chip, stride, args.block, args.val_frac, args.shard_chips, args.seed)
        result = prepare(args.src, args.out, spec)
        chips = result["index"]["chips"]
        print(f"prepare: {chips['train']} train + {chips['val']} val chips; shards written "
              f"{len(result['written'])}, already valid {len(result['skipped'])}")
    else:
        from app.emb.predict import predict

        predict(args.checkpoint, args.input, args.out, args.overlap, args.batch)
        print(f"predict: wrote {args.out}")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (BadInput, EnvironmentFailure, OSError) as exc:
        return exit_status(exc, f"{args.command}: error")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
