"""STAC API item search (paged) and what a catalogue's items may make us do.

- Search: POST {catalog}/search with collections, bbox, datetime and limit; pages followed through
  `next` links (GET href, or POST with the link's body, merged when the link says so), at most
  MAX_PAGES, a link seen twice ends the paging (a broken server cannot loop us).
- Presets: earth-search v1 (default) and Planetary Computer, with the hosts their assets live on
  (the only hosts an asset href or a redirect may point to, besides the catalogue's own and those
  given with --allow-host). Planetary Computer hrefs are signed with a SAS token from its token
  endpoint; the token is never written into the local items (they keep the unsigned hrefs).
- Local names: an item ID or asset key becomes a file or directory name only if it is 1-128
  characters of [A-Za-z0-9._-] and does not start with '.'; anything else (`../x`, `/abs`, NUL, a
  very long ID) is refused for that item, which is skipped with the reason.
"""

import re
from urllib.parse import urljoin, urlsplit

from app.fetch.http import Client, FetchError

MAX_PAGES = 10_000
PAGE = 100
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")

PRESETS: dict[str, dict] = {
    "earth-search": {"url": "https://earth-search.aws.element84.com/v1", "collection": "sentinel-2-l2a",
                     "asset_hosts": ["https://sentinel-cogs.s3.us-west-2.amazonaws.com"], "sign": None},
    "planetary-computer": {"url": "https://planetarycomputer.microsoft.com/api/stac/v1",
                           "collection": "sentinel-2-l2a",
                           "asset_hosts": ["https://sentinel2l2a01.blob.core.windows.net"],
                           "sign": "https://planetarycomputer.microsoft.com/api/sas/v1/token/{collection}"},
}


def preset_of(catalog: str) -> dict | None:
    for preset in PRESETS.values():
        if catalog.rstrip("/") == preset["url"]:
            return preset
    return None


def safe_name(text) -> str | None:
    """text if it can name a file under the output directory, else None."""
    return text if isinstance(text, str) and SAFE_NAME.fullmatch(text) else None


def search(client: Client, catalog: str, collection: str, bbox, datetime: str) -> list:
    """Every item of `collection` intersecting bbox (lon/lat) within the datetime interval."""
    url = catalog.rstrip("/") + "/search"
    body: dict = {"collections": [collection], "bbox": [float(v) for v in bbox], "datetime": datetime, "limit": PAGE}
    method, seen, items = "POST", set(), []
    for _ in range(MAX_PAGES):
        page = client.post_json(url, body) if method == "POST" else client.get_json(url)
        if not isinstance(page, dict) or not isinstance(page.get("features", []), list):
            raise FetchError(f"{url}: not a STAC ItemCollection")
        items += [f for f in page.get("features", []) if isinstance(f, dict)]
        nxt = next((link for link in page.get("links") or [] if isinstance(link, dict) and link.get("rel") == "next"),
                   None)
        if nxt is None or not isinstance(nxt.get("href"), str) or not page.get("features"):
            return items
        url = urljoin(url, nxt["href"])
        method = str(nxt.get("method", "GET")).upper()
        if method == "POST":
            link_body: dict = nxt["body"] if isinstance(nxt.get("body"), dict) else {}
            body = {**body, **link_body} if nxt.get("merge") else (link_body or body)
        key = (url, method, repr(sorted(body.items())) if method == "POST" else "")
        if key in seen:
            return items
        seen.add(key)
    raise FetchError(f"{catalog}: more than {MAX_PAGES} pages of results")


def pc_token(client: Client, token_url: str, collection: str) -> str:
    """A Planetary Computer SAS token for the collection's storage."""
    url = token_url.format(collection=collection)
    client.allow(url)
    doc = client.get_json(url)
    token = doc.get("token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise FetchError(f"{url}: no token in the answer")
    return token


def signed(href: str, token: str | None) -> str:
    if not token:
        return href
    return href + ("&" if urlsplit(href).query else "?") + token
