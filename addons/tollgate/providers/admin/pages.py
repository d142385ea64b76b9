"""The vendors' admin APIs asked over HTTPS: a page at a time, asked again on 429 and 5xx with
back-off (a `Retry-After` honoured, within bounds), a refusal of the admin key told by the vendor's
own reason and never with the key. Plain code: the standard library's client, no proxy."""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ATTEMPTS = 6  # a request asked at most this many times
BACKOFF_S = 0.5  # the first wait, doubled each time
MOST_WAIT_S = 30.0  # no wait longer, whatever Retry-After says
TIMEOUT_S = 60.0  # per request
MOST_PAGES = 1000  # a vendor that pages without end is stopped
# What looks like a key in a vendor's message (OpenAI names the key it refused, part hidden).
_KEYISH = re.compile(r"\b(?:sk|key|apikey)[-_][A-Za-z0-9_\-*.]{4,}")


class AdminRefused(Exception):
    """The vendor refused the admin key (401, 403): its reason, the key nowhere in it."""


class VendorUnreadable(Exception):
    """The vendor could not be read: unreachable, or an answer that is no page."""


@dataclass(frozen=True)
class Admin:
    """Where a vendor's admin API answers and how it is asked."""

    base_url: str
    headers: Mapping[str, str] = field(repr=False)  # the admin key among them: never shown
    ca_file: Path | None = None
    sleep: Callable[[float], None] = time.sleep

    def context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=None if self.ca_file is None else str(self.ca_file))
        except (OSError, ssl.SSLError) as e:
            why = getattr(e, "strerror", None) or e
            raise VendorUnreadable(f"ca_file {self.ca_file}: cannot be read: {why}") from None

    def scrub(self, text: str) -> str:
        """A vendor's text without the key, nor anything that looks like one."""
        for value in self.headers.values():
            if len(value) >= 8:
                text = text.replace(value, "[the admin key]")
        return _KEYISH.sub("[a key]", text)


Query = Sequence[tuple[str, str]]


def get(admin: Admin, path: str, query: Query) -> dict[str, Any]:
    """One page: the JSON object the vendor answers with."""
    url = f"{admin.base_url}{path}" + (f"?{urlencode(list(query))}" if query else "")
    context = admin.context()
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(url, headers={**admin.headers, "accept": "application/json"})
        wait = BACKOFF_S * 2 ** (attempt - 1)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as answer:
                body = answer.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            if e.code in (401, 403):
                raise AdminRefused(f"{e.code}: {admin.scrub(_reason(body))}") from None
            if (e.code == 429 or e.code >= 500) and attempt < ATTEMPTS:
                admin.sleep(min(MOST_WAIT_S, _retry_after(e.headers.get("retry-after"), wait)))
                continue
            raise VendorUnreadable(f"{path}: {e.code}: {admin.scrub(_reason(body))}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if attempt < ATTEMPTS:
                admin.sleep(min(MOST_WAIT_S, wait))
                continue
            raise VendorUnreadable(f"{path}: cannot reach {admin.base_url}: {admin.scrub(str(reason))}") from None
        try:
            page = json.loads(body)
        except ValueError:
            raise VendorUnreadable(f"{path}: the answer is not JSON") from None
        if not isinstance(page, dict):
            raise VendorUnreadable(f"{path}: the answer is not a JSON object")
        return page
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _retry_after(value: str | None, otherwise: float) -> float:
    """Seconds to wait: the vendor's `Retry-After` (seconds) where it gives one, else `otherwise`."""
    try:
        seconds = float(value) if value is not None else otherwise
    except ValueError:
        return otherwise
    return seconds if seconds >= 0 else otherwise


def _reason(body: bytes) -> str:
    """The vendor's own words of an error: its `error.message` ({"error": {"message": …}}, both
    vendors' shape), else the start of the body."""
    try:
        document = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no reason given"
    error = document.get("error") if isinstance(document, dict) else None
    message = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    return str(message) if message else json.dumps(document)[:200]


def pages(admin: Admin, path: str, query: Query) -> Iterator[dict[str, Any]]:
    """Every page of a usage or cost report: `has_more` and `next_page`, asked again as `page=`."""
    cursor: str | None = None
    for _ in range(MOST_PAGES):
        page = get(admin, path, [*query, *((("page", cursor),) if cursor else ())])
        yield page
        cursor = page.get("next_page") if page.get("has_more") else None
        if not isinstance(cursor, str) or not cursor:
            return
    raise VendorUnreadable(f"{path}: more than {MOST_PAGES} pages")


def listed(admin: Admin, path: str, query: Query, after: str) -> Iterator[dict[str, Any]]:
    """Every item of a list (projects, keys): `has_more`, then the last item's id as `after`
    (`after_id` for Anthropic: the name given)."""
    cursor: str | None = None
    for _ in range(MOST_PAGES):
        page = get(admin, path, [*query, *(((after, cursor),) if cursor else ())])
        data = page.get("data")
        if not isinstance(data, list):
            raise VendorUnreadable(f"{path}: the answer has no data list")
        yield from (item for item in data if isinstance(item, dict))
        last = page.get("last_id") or (data[-1].get("id") if data and isinstance(data[-1], dict) else None)
        if not page.get("has_more") or not isinstance(last, str) or last == cursor:
            return
        cursor = last
    raise VendorUnreadable(f"{path}: more than {MOST_PAGES} pages")


def results[T](
    admin: Admin,
    path: str,
    query: Query,
    problems: list[str],
    bucket: Callable[[dict[str, Any]], tuple[date, Any]],
    read: Callable[[date, dict[str, Any]], T],
) -> Iterator[tuple[date, T]]:
    """Each result of every daily bucket of a usage or cost report, as `read` reads it, with its
    bucket's day (`bucket` reads a bucket's day and results list, raising ValueError). What is not
    understood is named in `problems` and left out: a page, a bucket or a result."""
    where = path.split("/", 3)[-1]  # the path after /v1/organization(s)/
    for page in pages(admin, path, query):
        data = page.get("data")
        if not isinstance(data, list):
            problems.append(f"{where}: a page without a data list; left out")
            continue
        for i, each in enumerate(data):
            try:
                if not isinstance(each, dict):
                    raise ValueError("not an object")
                day, listed_results = bucket(each)
                if not isinstance(listed_results, list):
                    raise ValueError("no results list")
            except ValueError as e:
                problems.append(f"{where}: bucket {i}: {e}; left out")
                continue
            for n, result in enumerate(listed_results):
                if not isinstance(result, dict):
                    continue
                try:
                    yield day, read(day, result)
                except ValueError as e:
                    problems.append(f"{where} bucket {day} result {n}: {e}; left out")
