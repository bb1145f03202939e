"""`python -m app doctor`: the environment self-check (see app.doctor). Exit 0 ok, 3 a check failed."""

import argparse
import sys

from app.errors import EXIT_ENVIRONMENT, EXIT_OK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check imports, PROJ, threads, temp dir, GPUs")
    doctor.add_argument("--gpus", type=int, default=0, metavar="N", help="fail unless N GPUs are visible")
    doctor.add_argument("--min-temp-mib", type=int, default=64, metavar="M",
                        help="fail if the temp dir has less free space (default 64)")
    args = parser.parse_args(argv)

    from app.doctor import run_checks  # after parsing: --help must not import the geo stack

    results = run_checks(required_gpus=args.gpus, min_free_mib=args.min_temp_mib)
    for result in results:
        print(result.line(), flush=True)
    return EXIT_OK if all(r.ok for r in results) else EXIT_ENVIRONMENT


if __name__ == "__main__":
    sys.exit(main())
