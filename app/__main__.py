"""`python -m app doctor`: the environment self-check (see app.doctor). Exit 0 ok, 3 a check failed."""

import argparse
import sys

from app.errors import EXIT_ENVIRONMENT, EXIT_OK, guarded


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check imports, PROJ, threads, temp dir, GPUs")
    doctor.add_argument("--gpus", type=int, default=0, metavar="N", help="fail unless N GPUs are visible")
    doctor.add_argument("--min-temp-mib", type=int, default=64, metavar="M",
                        help="fail if the temp dir has less free space (default 64)")
    args = parser.parse_args(argv)
    return guarded("doctor", doctor_command, args)


def doctor_command(args) -> int:
    from app.doctor import run_checks  # after parsing: --help must not import the geo stack

    results = run_checks(required_gpus=args.gpus, min_free_mib=args.min_temp_mib)
    for result in results:
        print(result.line(), flush=True)
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)} (details above)", file=sys.stderr)
        return EXIT_ENVIRONMENT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
