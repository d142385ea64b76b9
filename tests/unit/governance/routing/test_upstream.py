"""Sending to a provider's API (`upstream.py`): where a request goes, the credential put on it, a
refused key's rest, and a request Tollgate makes itself sent with the standard library, trusting
the CAs mitmproxy's options name."""

from __future__ import annotations

import ast
import gzip
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from tests.support.fake_upstream import FakeUpstream, Reply
from tests.unit.test_layers import modules, nodes

from tollgate.common.config_base import ProviderConfig
from tollgate.common.fingerprint import fingerprint
from tollgate.configuration.config import parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.credentials.base import Applied, RequestParts, UpstreamCredential
from tollgate.credentials.keypool import KeyPool
from tollgate.formats.bodies.raw_headers import Fields
from tollgate.formats.request_facts import Classification
from tollgate.governance.routing.upstream import (
    Outgoing,
    Unreachable,
    credential_for,
    json_request,
    rest_refused_key,
    send,
    target_upstream,
)
from tollgate.providers import PROVIDERS


def test_a_request_goes_to_a_rules_upstream_else_the_providers_else_its_own_host() -> None:
    anthropic = PROVIDERS["anthropic"]
    configured = ProviderConfig(upstream="https://proxy.example:8443")
    assert target_upstream(anthropic, configured, "https://rule.example") == "https://rule.example"
    assert target_upstream(anthropic, configured) == "https://proxy.example:8443"
    assert target_upstream(anthropic, ProviderConfig()) == "https://api.anthropic.com"
    # A client's own call, not routed: the host it called.
    assert target_upstream(anthropic, ProviderConfig(), routed=False) is None


def test_a_json_request_carries_what_its_target_needs_and_no_credential() -> None:
    request = json_request(
        PROVIDERS["anthropic"], ProviderConfig(upstream="https://127.0.0.1:9443"), "/v1/messages", b"{}", {"x-a": "b"}
    )
    assert request.upstream == "https://127.0.0.1:9443" and request.path == "/v1/messages"
    assert request.fields == (
        (b"host", b"127.0.0.1:9443"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"anthropic-version", b"2023-06-01"),
        (b"x-a", b"b"),
    )


def test_the_credential_is_the_providers_a_pooled_key_taken_in_turn() -> None:
    loaded = Loaded.build(parse_config({"providers": {"openai": {"keys": ["sk-one", "sk-two"]}}}, {}))
    openai, chat = PROVIDERS["openai"], Classification("chat.completions", "gpt-4o")
    taken = [credential_for(loaded, openai, chat) for _ in range(3)]
    assert [c.pooled_key if c is not None else None for c in taken] == ["sk-one", "sk-two", "sk-one"]
    side = credential_for(loaded, openai, chat, {openai.credentials.caller.side_header.lower(): "sk-callers"})
    assert side is not None and side.pooled_key is None
    assert credential_for(loaded, PROVIDERS["anthropic"], Classification("messages", "claude-haiku-4-5")) is None


class Ledger:
    def __init__(self) -> None:
        self.rests: list[tuple[str, float]] = []

    def rest(self, fingerprint: str, until: float) -> None:
        self.rests.append((fingerprint, until))


def test_a_refused_key_rests_for_its_retry_after_in_its_pool_and_the_shared_ledger() -> None:
    pool, ledger = KeyPool(("sk-one", "sk-two")), Ledger()
    rest_refused_key(pool, "sk-one", 429, "30", ledger)  # type: ignore[arg-type]
    assert [pool.take() for _ in range(2)] == ["sk-two", "sk-two"]
    ((key, until),) = ledger.rests
    assert key == fingerprint("sk-one") and 29 < until - time.time() <= 30
    rest_refused_key(pool, "sk-two", 429, None, None)  # no ledger shared: the pool alone, 60 s
    assert pool.take() == "sk-one"  # both rest: the one free soonest


@pytest.mark.parametrize(("status", "retry_after", "rests"), [(401, None, 60.0), (500, "30", None), (None, None, None)])
def test_only_a_key_refused_with_401_or_429_rests_for_its_retry_after(
    status: int | None, retry_after: str | None, rests: float | None
) -> None:
    pool, ledger = KeyPool(("sk-one", "sk-two")), Ledger()
    rest_refused_key(pool, "sk-one", status, retry_after, ledger)  # type: ignore[arg-type]
    if rests is None:  # any other answer, or none (a failed connection): nothing rests
        assert (ledger.rests, pool.take(), pool.take()) == ([], "sk-one", "sk-two")
        return
    ((key, until),) = ledger.rests
    assert key == fingerprint("sk-one") and rests - 1 < until - time.time() <= rests
    assert [pool.take() for _ in range(2)] == ["sk-two", "sk-two"]


class Moving(UpstreamCredential):
    """A credential that sends the request elsewhere, as Vertex AI's token does."""

    __slots__ = ("pooled_key", "seen")

    def __init__(self) -> None:
        self.pooled_key = None
        self.seen: list[RequestParts] = []

    def apply(self, fields: Fields, request: Callable[[], RequestParts]) -> Applied:
        self.seen.append(request())
        return Applied((*fields, (b"authorization", b"Bearer t")), "fp", "elsewhere.example", b"/v1/there?x=1")


def test_a_credential_that_moves_the_request_moves_its_host_header_and_path() -> None:
    request = Outgoing("https://127.0.0.1:9443", "/v1/here", ((b"Host", b"127.0.0.1:9443"), (b"a", b"b")), b"{}")
    credential = Moving()
    moved = request.with_credential(credential)
    assert (moved.upstream, moved.path) == ("https://elsewhere.example", "/v1/there?x=1")
    assert moved.fields == ((b"Host", b"elsewhere.example"), (b"a", b"b"), (b"authorization", b"Bearer t"))
    (parts,) = credential.seen
    assert (parts.method, parts.scheme, parts.host, parts.path, parts.body) == (
        b"POST", b"https", "127.0.0.1", b"/v1/here", b"{}",
    )  # fmt: skip
    assert parts.upstream == "https://127.0.0.1:9443"


@pytest.fixture
def fake(upstream_ca: trustme.CA):
    upstream = FakeUpstream(upstream_ca)
    yield upstream
    upstream.close()


def outgoing(url: str) -> Outgoing:
    host = url.removeprefix("https://").encode()
    return Outgoing(url, "/v1/chat?x=1", ((b"host", host), (b"x-api-key", b"k"), (b"x-b", b"1")), b"{}")


def test_a_request_goes_with_exactly_its_fields_trusting_the_ca_named(
    fake: FakeUpstream, upstream_ca_pem: Path
) -> None:
    fake.handler = lambda r: Reply(429, {"error": "slow"}, {"Retry-After": "7"})
    answer = send(outgoing(fake.url), 5.0, str(upstream_ca_pem))
    assert (answer.status, answer.headers["retry-after"], answer.body) == (429, "7", b'{"error": "slow"}')
    (received,) = fake.received
    assert (received.method, received.path, received.body) == ("POST", "/v1/chat?x=1", b"{}")
    # Nothing beside the fields given (a signature covers them) but the body's length.
    host = fake.url.removeprefix("https://")
    assert received.headers == {"host": host, "x-api-key": "k", "x-b": "1", "content-length": "2"}


def test_an_upstream_whose_ca_is_not_trusted_is_unreachable_unless_tls_is_insecure(fake: FakeUpstream) -> None:
    with pytest.raises(Unreachable, match=r"^SSLCertVerificationError$"):
        send(outgoing(fake.url), 5.0, True)  # certifi's CAs, as mitmproxy trusts by default
    assert not fake.received
    assert send(outgoing(fake.url), 5.0, False).status == 200  # ssl_insecure


def test_a_compressed_answer_is_read_decoded(fake: FakeUpstream, upstream_ca_pem: Path) -> None:
    fake.handler = lambda r: Reply(200, gzip.compress(b'{"ok": true}'), {"content-encoding": "gzip"})
    assert send(outgoing(fake.url), 5.0, str(upstream_ca_pem)).body == b'{"ok": true}'


def test_an_upstream_that_is_not_listening_is_unreachable(fake: FakeUpstream) -> None:
    url = fake.url
    fake.close()
    with pytest.raises(Unreachable, match=r"^ConnectionRefusedError$"):
        send(outgoing(url), 5.0, False)


def imports(path: str) -> set[str]:
    """The modules a module of the package (`upstream.py`) imports, relative ones as written (`..upstream`)."""
    found: set[str] = set()
    for node in nodes(path):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_nothing_sends_with_requests_and_the_upstream_module_knows_no_mitmproxy() -> None:
    assert not [path for path in modules() if "requests" in imports(path)]
    assert "mitmproxy" not in {m.split(".")[0] for m in imports("governance/routing/upstream.py")}
