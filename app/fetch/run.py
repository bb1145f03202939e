"""What `app.season fetch` and `app.emb fetch` share around the core: the client from the command's
flags, the output lock, the href policy, each local asset's provenance and the resume check, and the
closing summary."""

import fcntl
import sys
from pathlib import Path

from app.errors import BadInput, EnvironmentFailure
from app.fetch import stac
from app.fetch.core import GAP
from app.fetch.http import Client, FetchRefused
from app.hpc.atomic import sha256_file

LOCK = ".fetch.lock"


def add_arguments(parser, catalog_default=None) -> None:
    """The network flags both fetch commands take."""
    parser.add_argument("--catalog", default=catalog_default, required=catalog_default is None,
                        help="STAC API root" + (" (default %(default)s)" if catalog_default else ""))
    parser.add_argument("--allow-host", action="append", help="another origin (scheme://host[:port]) asset hrefs "
                        "and redirects may point to (the catalogue's own and its preset's asset hosts are allowed)")
    parser.add_argument("--workers", type=int, default=16, help="parallel connections (default %(default)s)")
    parser.add_argument("--retries", type=int, default=8, help="retries per request (default %(default)s)")
    parser.add_argument("--backoff", type=float, default=0.5, help="first backoff in seconds, doubling (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds without data before a retry (default %(default)s)")
    parser.add_argument("--ca-file", help="CA bundle for TLS (default: the system's)")
    parser.add_argument("--gap-kib", type=int, default=GAP >> 10, help="merge tile ranges whose hole is at most "
                        "this many KiB into one request (default %(default)s; ~ bandwidth x RTT / workers)")


def client_for(args) -> Client:
    if args.workers < 1 or args.retries < 0 or args.backoff < 0 or args.timeout <= 0 or args.gap_kib < 0:
        raise BadInput("--workers >= 1, --retries >= 0, --backoff >= 0, --timeout > 0, --gap-kib >= 0")
    preset = stac.preset_of(args.catalog)
    allowed = [args.catalog] + list(args.allow_host or []) + (preset["asset_hosts"] if preset else [])
    try:
        return Client(allowed, retries=args.retries, backoff=args.backoff, timeout=args.timeout, ca_file=args.ca_file)
    except (FetchRefused, OSError) as exc:
        raise BadInput(f"--catalog/--allow-host/--ca-file: {exc}") from None


def lock_out(out: Path):
    """An exclusive lock on OUT (kept while the returned file is open): one fetch writes there at a time."""
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / LOCK, "a")  # held open for the whole fetch: the lock lives with it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise EnvironmentFailure(f"another fetch is writing to {out} (lock {out / LOCK})") from None
    return lock


def href_refusal(client: Client, href) -> str | None:
    """Why an asset href cannot be fetched, or None."""
    if not isinstance(href, str) or not href:
        return "no href"
    if href.lower().startswith("file:") or "://" not in href:
        return f"local href {href[:120]!r} refused (a catalogue's assets must be http(s))"
    try:
        client.check(href)
    except FetchRefused as exc:
        return str(exc)
    return None


def provenance(job, source_href: str) -> dict:
    """A fetched asset's fields in its local item: where it came from, which version, what was fetched."""
    r = job.remote
    return {"fetch:source_href": source_href, "fetch:etag": r.etag, "fetch:last_modified": r.last_modified,
            "fetch:source_bytes": r.size, "fetch:bytes": job.fetched, "fetch:tiles": job.tiles_written,
            "fetch:tiles_total": len(r.header.offsets), "file:size": job.size, "fetch:sha256": job.sha256}


def still_valid(record: dict, path: Path, remote, tiles, source_href: str) -> bool:
    """A local asset (its provenance record, its file) still holds the same remote object's tiles,
    every one now wanted, with the recorded size and checksum."""
    try:
        return (record.get("fetch:etag") == remote.etag and record.get("fetch:source_href") == source_href
                and set(remote.header.present(tiles)) <= set(record.get("fetch:tiles", []))
                and path.is_file() and path.stat().st_size == record.get("file:size")
                and sha256_file(path) == record.get("fetch:sha256"))
    except (OSError, TypeError, AttributeError):
        return False


def log_skipped(log, skipped: list, report: Path, first: int = 5) -> None:
    """The first skipped items with their reasons, then how many more (all are in the report file):
    a national search skips hundreds of items that touch no field."""
    for item_id, reason in skipped[:first]:
        log(f"item {item_id} skipped: {reason}")
    if len(skipped) > first:
        log(f"... and {len(skipped) - first} more item(s) skipped (each with its reason in {report})")


def summary_line(counts: dict, client: Client, full: int, seconds: float) -> str:
    share = f" ({client.stats.bytes / full:.2%})" if full else ""
    return (f"done: {counts.get('fetched', 0)} fetched, {counts.get('already fetched', 0)} already fetched, "
            f"{counts.get('skipped', 0)} skipped, {counts.get('failed', 0)} failed; "
            f"{client.stats.bytes / 1e6:.1f} MB fetched against {full / 1e6:.1f} MB in the full assets{share}, "
            f"{client.stats.requests} requests, retries {dict(client.stats.retries) or 'none'}, {seconds:.2f} s")


def failed_exit(prog: str, failed: int) -> int:
    """Exit status of a fetch: 3 (and one line) if some item failed, else 0."""
    if failed:
        print(f"{prog}: {failed} item(s) failed (network): rerun the same command to resume", file=sys.stderr)
        return 3
    return 0
