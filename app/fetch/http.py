"""HTTP for the fetch core: range GETs and JSON requests over the standard library (http.client +
ssl), so the season image needs no extra package. One persistent connection per thread and origin.

Policy, in one place:
- Retried (up to `retries` more attempts, exponential backoff from `backoff` s with full jitter,
  capped at 60 s): 429, 500, 502, 503, 504, timeouts (connect or a stalled body), connection resets,
  refused connections and bodies shorter than promised. `Retry-After` (seconds or an HTTP date) is
  honoured, capped at 300 s. Every retry is counted by cause in `Client.stats`.
- TLS always verifies (tls_context: --ca-file, the system's store, or certifi's bundle).
- Not retried: other statuses (404, 403, ...), TLS errors (a certificate that does not verify is never
  accepted and never retried: one line), a server that ignores Range (200 to a range request), a
  Content-Range or Content-Length that does not match what was asked (a body is never read past the
  requested length: memory stays bounded whatever a server claims).
- Redirects (301/302/303/307/308) are followed only to an allowed origin (`allowed`), never to
  another scheme than http/https; anything else is refused (FetchRefused).
"""

import email.utils
import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 300.0
MAX_REDIRECTS = 5
MAX_JSON_BYTES = 64 << 20  # a STAC page or item larger than this is refused
CHUNK = 1 << 16
USER_AGENT = "sealed-geoml-fetch/1"


class FetchError(Exception):
    """A request that failed for good (after its retries, or one that must not be retried)."""


class FetchRefused(FetchError):
    """A request the policy refuses: foreign origin, non-http scheme, absurd size."""


def origin(url: str) -> str:
    """scheme://host:port of a URL (default ports made explicit), the unit of trust."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused(f"not an http(s) URL: {url[:200]!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


@dataclass
class Response:
    status: int
    headers: dict  # lower-case names
    body: bytes
    url: str  # the URL finally answered (after allowed redirects)


@dataclass
class Stats:
    requests: int = 0
    bytes: int = 0
    retries: dict = field(default_factory=dict)  # cause -> count
    waited: float = 0.0  # seconds slept before retries (backoff, Retry-After)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, nbytes: int) -> None:
        with self.lock:
            self.requests += 1
            self.bytes += nbytes

    def retried(self, cause: str, wait: float) -> None:
        with self.lock:
            self.retries[cause] = self.retries.get(cause, 0) + 1
            self.waited += wait


class _Retry(Exception):
    def __init__(self, cause: str, detail: str, wait: float | None = None):
        super().__init__(detail)
        self.cause, self.wait = cause, wait


class Client:
    """Thread-safe: each thread keeps its own connections."""

    def __init__(self, allowed=(), retries: int = 8, backoff: float = 0.5, timeout: float = 30.0,
                 ca_file: str | None = None, sleep=time.sleep):
        self.allowed = {origin(a) if "://" in a else a for a in allowed}
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.ssl = tls_context(ca_file)
        self.stats = Stats()
        self._local = threading.local()
        self._sleep = sleep

    def allow(self, url: str) -> None:
        self.allowed.add(origin(url))

    def check(self, url: str) -> str:
        """The URL's origin if allowed, else FetchRefused."""
        o = origin(url)
        if o not in self.allowed:
            raise FetchRefused(f"{o} is not an allowed host (allow it with --allow-host)")
        return o

    # -- requests -----------------------------------------------------------------------------
    def get_range(self, url: str, start: int, end: int, short_ok: bool = False) -> Response:
        """Bytes [start, end) of url (206 only; the body is exactly end - start bytes, or with
        short_ok fewer where the object ends before `end`)."""
        headers = {"Range": f"bytes={start}-{end - 1}"}
        return self._request("GET", url, headers, None, expect=(start, end, short_ok))

    def get_json(self, url: str):
        return self._json(self._request("GET", url, {"Accept": "application/geo+json, application/json"}, None))

    def post_json(self, url: str, doc) -> object:
        body = json.dumps(doc).encode()
        return self._json(self._request("POST", url, {"Content-Type": "application/json",
                                                      "Accept": "application/geo+json, application/json"}, body))

    @staticmethod
    def _json(resp: Response):
        try:
            return json.loads(resp.body)
        except ValueError as exc:
            raise FetchError(f"{resp.url}: not JSON ({exc})") from None

    def _request(self, method, url, headers, body, expect=None) -> Response:
        attempt = 0
        while True:
            try:
                return self._follow(method, url, headers, body, expect)
            except _Retry as r:
                if attempt >= self.retries:
                    raise FetchError(f"{_short(url)}: {r} (gave up after {attempt + 1} attempts)") from None
                delay = random.uniform(0, min(MAX_BACKOFF_S, self.backoff * 2 ** attempt))
                if r.wait is not None:
                    delay = max(delay, min(r.wait, MAX_RETRY_AFTER_S))
                self.stats.retried(r.cause, delay)
                self._sleep(delay)
                attempt += 1

    def _follow(self, method, url, headers, body, expect) -> Response:
        for _ in range(MAX_REDIRECTS + 1):
            self.check(url)
            resp = self._once(method, url, headers, body, expect)
            if resp.status not in REDIRECT_STATUS:
                return resp
            target = resp.headers.get("location")
            if not target:
                raise FetchError(f"{_short(url)}: redirect without a Location")
            url = urljoin(url, target)
            scheme = urlsplit(url).scheme
            if scheme not in ("http", "https"):
                raise FetchRefused(f"redirect to a {scheme or 'relative'}: URL refused ({_short(url)})")
            if resp.status == 303:
                method, body = "GET", None
        raise FetchError(f"{_short(url)}: more than {MAX_REDIRECTS} redirects")

    def _connection(self, url: str, fresh: bool = False):
        parts = urlsplit(url)
        host = parts.hostname or ""  # an absolute http(s) URL by now: redirects were checked above
        key = origin(url)
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get(key)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(host, parts.port or 443, timeout=self.timeout,
                                                   context=self.ssl)
            else:
                conn = http.client.HTTPConnection(host, parts.port or 80, timeout=self.timeout)
            pool[key] = conn
        return conn

    def _drop(self, url: str) -> None:
        conn = getattr(self._local, "pool", {}).pop(origin(url), None)
        if conn is not None:
            conn.close()

    def _once(self, method, url, headers, body, expect) -> Response:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(url)
        try:
            conn.request(method, target, body=body, headers={"User-Agent": USER_AGENT, **headers})
            raw = conn.getresponse()
            resp_headers = {k.lower(): v for k, v in raw.getheaders()}
            status = raw.status
            if status in RETRY_STATUS or status in REDIRECT_STATUS or status >= 400:
                raw.read(CHUNK)  # a short error body; the connection is dropped below anyway
                self._drop(url)
                if status in RETRY_STATUS:
                    raise _Retry(f"http_{status}", f"HTTP {status}", _retry_after(resp_headers.get("retry-after")))
                if status in REDIRECT_STATUS:
                    return Response(status, resp_headers, b"", url)
                raise FetchError(f"{_short(url)}: HTTP {status} {raw.reason}")
            data = self._body(raw, resp_headers, url, expect)
            if resp_headers.get("connection", "").lower() == "close":
                self._drop(url)
        except ssl.SSLError as exc:
            self._drop(url)
            raise FetchError(f"{_short(url)}: TLS error: {exc.reason or exc}") from None
        except ssl.CertificateError as exc:
            self._drop(url)
            raise FetchError(f"{_short(url)}: TLS certificate error: {exc}") from None
        except TimeoutError as exc:
            self._drop(url)
            raise _Retry("timeout", f"timed out ({exc or 'no data'})") from None
        except ConnectionRefusedError:
            self._drop(url)
            raise _Retry("refused", "connection refused") from None
        except http.client.IncompleteRead:
            self._drop(url)
            raise _Retry("truncated", "body shorter than promised") from None
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine) as exc:
            self._drop(url)
            raise _Retry("reset", f"connection lost ({type(exc).__name__})") from None
        except socket.gaierror as exc:
            self._drop(url)
            raise FetchError(f"{_short(url)}: cannot resolve host ({exc.strerror})") from None
        except OSError as exc:
            self._drop(url)
            raise _Retry("network", f"network error ({exc.strerror or exc})") from None
        self.stats.add(len(data))
        return Response(status, resp_headers, data, url)

    def _body(self, raw, headers, url, expect) -> bytes:
        length = headers.get("content-length")
        if expect is not None:
            start, end, short_ok = expect
            if raw.status != 206:
                raw.close()
                self._drop(url)
                raise FetchRefused(f"{_short(url)}: the server ignores Range requests (HTTP {raw.status})")
            got = _content_range(headers.get("content-range"))
            if got is not None and short_ok and got[0] == start and got[1] < end and got[1] == got[2]:
                end = got[1]  # the object ends before the range asked for
            if got is None or got[:2] != (start, end):
                self._drop(url)
                raise FetchRefused(f"{_short(url)}: Content-Range {headers.get('content-range')!r} is not "
                                   f"the bytes asked for ({start}-{end - 1})")
            if length is not None and length.strip() != str(end - start):
                self._drop(url)
                raise FetchRefused(f"{_short(url)}: Content-Length {length[:30]} for {end - start} bytes asked")
            limit = end - start
        else:
            limit = MAX_JSON_BYTES
            if length is not None and (not length.strip().isdigit() or int(length) > limit):
                self._drop(url)
                raise FetchRefused(f"{_short(url)}: response of {length[:30]} bytes refused (limit {limit})")
        parts, got = [], 0
        while got < limit:
            chunk = raw.read(min(CHUNK, limit - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        if expect is not None and got < limit:
            raise http.client.IncompleteRead(b"", limit - got)
        if expect is None and got >= limit and raw.read(1):
            self._drop(url)
            raise FetchRefused(f"{_short(url)}: response larger than {limit} bytes refused")
        if length is not None and expect is None and got < int(length):
            raise http.client.IncompleteRead(b"", int(length) - got)
        return b"".join(parts)


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verifying TLS: ca_file if given, else the system's CA store, else certifi's bundle (the images
    have no system CA store; certifi is pinned in every image)."""
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    paths = ssl.get_default_verify_paths()
    if (paths.cafile and os.path.isfile(paths.cafile)) or (paths.capath and os.path.isdir(paths.capath)
                                                            and os.listdir(paths.capath)):
        return ssl.create_default_context()
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _content_range(text):
    """(start, end exclusive, total or None) of 'bytes a-b/total'."""
    if not text or not text.startswith("bytes "):
        return None
    try:
        span, total = text[6:].split("/")
        a, b = (int(v) for v in span.split("-"))
        return a, b + 1, (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def total_size(resp: Response) -> int | None:
    """The whole object's size from a range response's Content-Range."""
    got = _content_range(resp.headers.get("content-range"))
    return got[2] if got else None


def _retry_after(value) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(url: str) -> str:
    return url if len(url) <= 160 else url[:157] + "..."
