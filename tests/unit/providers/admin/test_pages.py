"""The vendors' admin APIs read over TLS from stand-ins answering in their documented shapes
(tests/support/admin_apis.py): every page, every key across projects, 429 asked again after its
Retry-After, a refused admin key told by the vendor's reason without the key, a bucket not
understood named while the rest is read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import trustme
from tests.support.admin_apis import AnthropicAdmin, Key, OpenAIAdmin, Usage, hint_of
from tests.support.fake_upstream import FakeUpstream

from tollgate.providers.admin import READERS, AdminRefused, VendorUnreadable
from tollgate.providers.admin.pages import ATTEMPTS

ADMIN = "sk-admin-0123456789abcdefghijwxyz"
DAY1, DAY2, DAY3 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)
HELD = "sk-proj-held-abcdefghijklmnop1234"
LAPTOP = "sk-proj-laptop-qrstuvwxyz5678"


@pytest.fixture
def served(upstream_ca: trustme.CA) -> Iterator[FakeUpstream]:
    server = FakeUpstream(upstream_ca)
    yield server
    server.close()


def url(server: FakeUpstream) -> str:
    return f"https://127.0.0.1:{server.port}"


def openai_api() -> OpenAIAdmin:
    api = OpenAIAdmin(ADMIN, {"proj_a": "Platform", "proj_b": "Research"})
    api.keys = [Key("key_held", "gateway", "proj_a", hint_of(HELD, 8, 4)),
                Key("key_laptop", "laptop", "proj_b", hint_of(LAPTOP, 8, 4))]  # fmt: skip
    api.usage = [
        Usage(DAY1, "key_held", "gpt-4o-mini-2024-07-18", 1200, 30, cached_tokens=200, requests=3),
        Usage(DAY3, "key_held", "gpt-4o-mini-2024-07-18", 10, 5, requests=1, batch=True),
        Usage(DAY2, "key_laptop", "gpt-4o", 500, 40, requests=2),
        Usage(DAY2, "key_laptop", "text-embedding-3-small", 80, 0, requests=1, endpoint="embeddings"),
    ]
    api.costs = [(DAY1, "proj_a", "gpt-4o-mini, input", "0.12"), (DAY1, "proj_a", "gpt-4o-mini, output", "0.03"),
                 (DAY2, "proj_b", "gpt-4o, input", "0.50")]  # fmt: skip
    return api


def read(name: str, server: FakeUpstream, ca: Path, key: str = ADMIN, sleeps: list[float] | None = None):
    reader = READERS[name]
    waits = [] if sleeps is None else sleeps
    return reader.read(reader.admin(url(server), key, ca, waits.append), DAY1, DAY3)


def test_openai_usage_costs_and_keys_across_projects_and_pages(served, upstream_ca_pem):
    api = openai_api()
    served.handler = api.handle
    report = read("openai", served, upstream_ca_pem)
    assert report.problems == []
    assert [(k.id, k.name, k.project) for k in report.keys] == [("key_held", "gateway", "Platform"),
                                                                  ("key_laptop", "laptop", "Research")]  # fmt: skip
    got = sorted((u.day, u.key_id, u.project, u.model, u.input_tokens, u.cached_input_tokens, u.output_tokens,
                  u.requests) for u in report.usage)  # fmt: skip
    assert got == [
        (DAY1, "key_held", "proj_a", "gpt-4o-mini-2024-07-18", 1200, 200, 30, 3),
        (DAY2, "key_laptop", "proj_b", "gpt-4o", 500, 0, 40, 2),
        (DAY2, "key_laptop", "proj_b", "text-embedding-3-small", 80, 0, 0, 1),
        (DAY3, "key_held", "proj_a", "gpt-4o-mini-2024-07-18", 10, 0, 5, 1),
    ]
    assert report.billed == {DAY1: Decimal("0.15"), DAY2: Decimal("0.5")}
    # Three days in pages of two buckets: two pages of each report; a project's two keys... one each.
    assert api.asked["/v1/organization/usage/completions"] == 2
    assert api.asked["/v1/organization/costs"] == 2
    asked = [r.path for r in served.received if "/usage/completions" in r.path]
    assert all("bucket_width=1d" in p and "group_by=api_key_id" in p and "group_by=batch" in p for p in asked)
    assert "page=page_2" in asked[1]
    assert all(r.headers["authorization"] == f"Bearer {ADMIN}" for r in served.received)


def test_anthropic_input_counts_cache_reads_and_writes(served, upstream_ca_pem):
    api = AnthropicAdmin(ADMIN)
    api.keys = [Key("apikey_01", "gateway", "wrkspc_01", "sk-ant-api03-R2D...igAA"),
                Key("apikey_02", "ci", "wrkspc_02", "sk-ant-api03-XyZ...q9AA")]  # fmt: skip
    api.usage = [Usage(DAY2, "apikey_01", "claude-sonnet-4-20250514", 1000, 50, cached_tokens=300,
                       cache_write_tokens=100)]  # fmt: skip
    api.costs = [(DAY2, "wrkspc_01", "Claude Sonnet 4 Usage - Input Tokens", "1.25")]
    served.handler = api.handle
    report = read("anthropic", served, upstream_ca_pem)
    assert report.problems == []
    assert [(k.id, k.project) for k in report.keys] == [("apikey_01", "wrkspc_01"), ("apikey_02", "wrkspc_02")]
    [u] = report.usage
    assert (u.day, u.key_id, u.project, u.model) == (DAY2, "apikey_01", "wrkspc_01", "claude-sonnet-4-20250514")
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.output_tokens, u.requests) == (
        1000, 300, 100, 50, None)  # fmt: skip
    assert report.billed == {DAY2: Decimal("1.25")}
    asked = [r for r in served.received if "usage_report" in r.path]
    assert all("group_by%5B%5D=api_key_id" in r.path for r in asked)
    assert all(r.headers["x-api-key"] == ADMIN and r.headers["anthropic-version"] for r in served.received)


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_429_is_asked_again_after_its_retry_after(served, upstream_ca_pem, name):
    api = openai_api() if name == "openai" else AnthropicAdmin(ADMIN)
    api.throttle, api.retry_after = 2, "7"
    served.handler = api.handle
    sleeps: list[float] = []
    read(name, served, upstream_ca_pem, sleeps=sleeps)
    assert sleeps == [7.0, 7.0]


def test_a_vendor_that_keeps_refusing_with_429_is_unreadable(served, upstream_ca_pem):
    api = openai_api()
    api.throttle, api.retry_after = 1000, "3600"
    served.handler = api.handle
    sleeps: list[float] = []
    with pytest.raises(VendorUnreadable, match="429"):
        read("openai", served, upstream_ca_pem, sleeps=sleeps)
    assert sleeps == [30.0] * (ATTEMPTS - 1)  # Retry-After honoured within its bound


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_a_refused_admin_key_is_told_by_the_vendors_reason_without_the_key(served, upstream_ca_pem, name):
    api = openai_api() if name == "openai" else AnthropicAdmin(ADMIN)
    served.handler = api.handle
    wrong = "sk-admin-WRONGwrongWRONGwrong9876"
    with pytest.raises(AdminRefused) as refused:
        read(name, served, upstream_ca_pem, key=wrong)
    said = str(refused.value)
    assert said.startswith("401: ")
    assert ("Incorrect API key provided" if name == "openai" else "invalid x-api-key") in said
    assert wrong not in said and wrong[:8] + "****" not in said and "9876" not in said


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_a_bucket_not_understood_is_named_and_the_rest_read(served, upstream_ca_pem, name):
    api = openai_api() if name == "openai" else AnthropicAdmin(ADMIN)
    if name == "anthropic":
        api.keys = [Key("apikey_01", "gateway", "wrkspc_01", "sk-ant-api03-R2D...igAA")]
        api.usage = [Usage(DAY2, "apikey_01", "claude-sonnet-4-20250514", 10, 5)]
    api.malformed_bucket = True
    served.handler = api.handle
    report = read(name, served, upstream_ca_pem)
    assert report.problems
    assert all("bucket 0" in p and "left out" in p for p in report.problems)
    assert report.usage  # the other buckets read


def test_an_unreachable_vendor_is_unreadable(upstream_ca_pem):
    reader = READERS["openai"]
    sleeps: list[float] = []
    with pytest.raises(VendorUnreadable, match="cannot reach"):
        reader.read(reader.admin("https://127.0.0.1:1", ADMIN, upstream_ca_pem, sleeps.append), DAY1, DAY1)
    assert len(sleeps) == ATTEMPTS - 1


def test_a_ca_file_that_cannot_be_read_makes_the_vendor_unreadable(tmp_path):
    reader = READERS["anthropic"]
    with pytest.raises(VendorUnreadable, match=r"ca_file .*missing\.pem: cannot be read"):
        reader.read(reader.admin("https://127.0.0.1:1", ADMIN, tmp_path / "missing.pem", print), DAY1, DAY1)
