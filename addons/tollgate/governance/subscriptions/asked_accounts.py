"""Which account a plan token names where its request does not say (a `PlanReader.asks_account`
vendor's): the account's e-mail, asked of the token information endpoint its plan reader's
settings declare once per token and kept (by the token's SHA-256, never the token) until the token
expires; and the plan the vendor's service last named for it (`PlanReader.plan_in_answer`). The
endpoint is asked in a thread, never on the event loop, once for all the calls that wait on one
token. Only a token's first calls wait for it: after that, what is kept is answered at once, and
asked again in the background once its time is past (a failure, which names no e-mail, a minute
later). Plain Python, no mitmproxy."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

FETCH_TIMEOUT = 5.0  # seconds for one ask of the endpoint
MAX_ANSWER = 64 * 1024
FAILED_FOR_S = 60.0  # how long an endpoint that failed is not asked again for that token
LONGEST_S = 3600.0  # an OAuth access token lives an hour at most: no e-mail is kept longer
KEPT = 10_000  # tokens whose account is kept (the oldest go first)


def token_key(token: str) -> str:
    """What a token is kept by: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class Account:
    email: str | None
    until: float  # monotonic time it is kept until


def parse_tokeninfo(body: bytes) -> tuple[str | None, float]:
    """The e-mail and the seconds the token has left (`expires_in`) in a tokeninfo answer;
    ValueError where it is not one."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    email = data.get("email")
    expires = data.get("expires_in")
    try:
        left = float(expires) if expires is not None else LONGEST_S
    except (TypeError, ValueError):
        left = LONGEST_S
    return (email if isinstance(email, str) and email else None), min(max(left, 0.0), LONGEST_S)


def tokeninfo_fetcher(url: str, ca_file: str | None) -> Callable[[str], bytes]:
    """A function that asks the endpoint about a token (a form POST, so that the token is in no
    URL), trusting `ca_file` or the system's roots, through no proxy (Tollgate may be its own)."""
    context = ssl.create_default_context(cafile=ca_file)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))

    def fetch(token: str) -> bytes:
        form = urllib.parse.urlencode({"access_token": token}).encode()
        request = urllib.request.Request(
            url, data=form, headers={"Accept": "application/json", "User-Agent": "tollgate"}
        )
        with opener.open(request, timeout=FETCH_TIMEOUT) as response:
            return response.read(MAX_ANSWER)

    return fetch


class AskedAccounts:
    """The accounts of the asked-about tokens seen, and the plan each was last said to be on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._accounts: OrderedDict[str, Account] = OrderedDict()
        self._asking: dict[str, asyncio.Future[str | None]] = {}
        self._plans: OrderedDict[str, str] = OrderedDict()
        self._fetchers: dict[tuple[str, str | None], Callable[[str], bytes]] = {}
        self.asked = 0  # how many times the endpoint was asked (for the metrics and tests)

    def email(self, token: str, url: str, ca_file: str | None) -> str | Awaitable[str | None] | None:
        """The token's e-mail: at once where the token was asked about before, else once the
        endpoint has answered. What is kept past its time (a failed ask's, or an expired token's)
        is answered still, while the endpoint is asked again in the background."""
        key = token_key(token)
        account = self._accounts.get(key)
        if account is not None:
            if account.until <= self._clock() and key not in self._asking:
                self._asking[key] = asyncio.ensure_future(self._ask(key, token, url, ca_file))
            return account.email
        asking = self._asking.get(key)
        if asking is None:
            asking = asyncio.ensure_future(self._ask(key, token, url, ca_file))
            self._asking[key] = asking
        return asyncio.shield(asking)

    async def _ask(self, key: str, token: str, url: str, ca_file: str | None) -> str | None:
        try:
            fetch = self._fetchers.get((url, ca_file))
            if fetch is None:
                fetch = self._fetchers[(url, ca_file)] = tokeninfo_fetcher(url, ca_file)
            self.asked += 1
            body = await asyncio.wait_for(asyncio.to_thread(fetch, token), FETCH_TIMEOUT * 2)
            email, left = parse_tokeninfo(body)
        except Exception:  # unreachable, refused (an expired token: 400), not JSON: no e-mail
            email, left = None, FAILED_FOR_S
        finally:
            self._asking.pop(key, None)
        known = self._accounts.get(key)
        if email is None and known is not None:
            email = known.email  # a token's account does not change: an ask that failed unsays nothing
        self._keep(self._accounts, key, Account(email, self._clock() + left))
        return email

    def plan(self, key: str) -> str | None:
        """The plan the vendor's service last named for a token (by its `token_key`)."""
        return self._plans.get(key)

    def told(self, key: str, plan: str | None) -> None:
        """The plan a service's answer to a token names (by its `token_key`), kept; None: none named."""
        if plan is not None:
            self._keep(self._plans, key, plan)

    @staticmethod
    def _keep[V](kept: OrderedDict[str, V], key: str, value: V) -> None:
        kept[key] = value
        kept.move_to_end(key)
        while len(kept) > KEPT:
            kept.popitem(last=False)
