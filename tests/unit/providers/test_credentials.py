"""The credentials part alone (`providers/credentials.py`): where a caller's key is read, where
Tollgate's goes, and the order of an upstream credential, without a provider around it."""

from collections.abc import Mapping

from tollgate.common.config_base import ProviderConfig
from tollgate.common.fingerprint import fingerprint
from tollgate.credentials.base import UpstreamCredential
from tollgate.credentials.header_key import HeaderKey
from tollgate.credentials.keypool import KeyPool
from tollgate.formats.request_facts import Classification
from tollgate.providers import PROVIDERS
from tollgate.providers.credentials import (
    CallerKeys,
    Credentials,
    KeyPlacement,
    OwnCredential,
    Presented,
    UpstreamCredentials,
)

NATIVE = Classification("chat", wire_format="anthropic-messages")  # its keys go in the kind's header
OPENAI_SHAPED = Classification("chat.completions", wire_format="openai-api")  # Bearer keys
SETTINGS = ProviderConfig()
KEYS = Credentials(
    CallerKeys(
        "X-Acme-Key",
        ("x-acme-key", "authorization", "query:key"),
        positions=("x-acme-key", "authorization", "query:key", "query:sig"),
    ),
    KeyPlacement("x-acme-key", billing_headers=frozenset((b"acme-account",))),
)


def test_the_positions_are_worked_out_once() -> None:
    assert KEYS.caller.header_positions == {b"x-acme-key", b"authorization"}
    assert KEYS.caller.query_positions == ("key", "sig")
    assert KEYS.key.pooled_drops == {b"x-acme-key", b"authorization", b"acme-account"}
    assert KEYS.caller.side_name == "x-acme-key"
    assert CallerKeys("X-K", ("authorization",)).positions == ("authorization",)


def test_every_key_presented_is_found_where_it_was_put() -> None:
    headers = {"x-acme-key": " k1 ", "authorization": "Bearer k2"}
    assert KEYS.caller.presented(headers, {"key": "k3", "sig": "s"}) == [
        Presented("k1", "x-acme-key"),
        Presented("k2", "authorization"),
        Presented("k3", "query:key"),
    ]
    assert KEYS.caller.presented({"authorization": "token gho_1"}, {}) == []  # not a Bearer token


def test_any_scheme_reads_a_plans_token_however_it_comes() -> None:
    plans = CallerKeys("X-P", ("authorization",), any_scheme=True)
    assert plans.presented({"authorization": "token gho_1"}, {}) == [Presented("gho_1", "authorization")]
    assert plans.presented({"authorization": "eyJbare"}, {}) == [Presented("eyJbare", "authorization")]


def test_the_key_goes_in_the_kinds_header_or_where_the_format_carries_keys() -> None:
    assert KEYS.key.injected("sk", NATIVE) == ("x-acme-key", "sk")
    assert KEYS.key.injected("sk", OPENAI_SHAPED) == ("authorization", "Bearer sk")
    always = KeyPlacement("api-key", key_by_format=False)
    assert always.injected("sk", OPENAI_SHAPED) == ("api-key", "sk")


def test_the_order_side_header_then_pool_then_what_is_held() -> None:
    side = KEYS.source.upstream_credential(NATIVE, {"x-acme-key": "own"}, KeyPool(["pooled"]), SETTINGS, None)
    assert isinstance(side, HeaderKey) and side.fingerprint == fingerprint("own")
    pooled = KEYS.source.upstream_credential(NATIVE, {}, KeyPool(["pooled"]), SETTINGS, None)
    assert isinstance(pooled, HeaderKey) and pooled.fingerprint == fingerprint("pooled")
    assert KEYS.source.upstream_credential(NATIVE, {}, KeyPool([]), SETTINGS, None) is None


class Held(UpstreamCredentials[str]):
    """A kind that holds a credential of its own once no key is left, and pools of its runtime."""

    def own_pools(self, runtime: str | None) -> Mapping[str, KeyPool]:
        return {"res": KeyPool(["res-key"])} if runtime == "with-pool" else {}

    def held_credential(
        self, classification: Classification, side: Mapping[str, str], settings: ProviderConfig, runtime: str | None
    ) -> UpstreamCredential | None:
        return self.key.header_key(f"held-{runtime}", classification)


def test_a_kind_overrides_only_its_hooks() -> None:
    held = Credentials(CallerKeys("X-H", ("authorization",)), KeyPlacement("authorization"), Held())
    assert not held.check.verifies_callers
    by_resource = Classification("chat", resource="res", wire_format="anthropic-messages")
    got = held.source.upstream_credential(by_resource, {}, KeyPool([]), SETTINGS, "with-pool")
    assert isinstance(got, HeaderKey) and got.fingerprint == fingerprint("res-key")
    last = held.source.upstream_credential(NATIVE, {}, KeyPool([]), SETTINGS, "token")
    assert isinstance(last, HeaderKey) and last.fingerprint == fingerprint("held-token")


def test_an_anonymous_callers_own_is_its_first_key() -> None:
    assert KEYS.check.own_credential({}, {"authorization": "Bearer mine"}, {}) == OwnCredential(fingerprint("mine"))
    assert KEYS.check.own_credential({}, {}, {}) == OwnCredential(None)


def test_each_provider_declares_a_kind() -> None:
    kinds = {name: type(p.credentials.source).__name__ for name, p in PROVIDERS.items() if "_" not in type(p).__name__}
    assert kinds == {
        "openai": "UpstreamCredentials",
        "anthropic": "UpstreamCredentials",
        "chatgpt": "UpstreamCredentials",
        "copilot": "UpstreamCredentials",
        "code_assist": "UpstreamCredentials",
        "azure": "EntraCredentials",
        "bedrock": "SigV4Credentials",
        "gemini": "GoogleKeys",
        "vertex": "VertexCredentials",
    }


def test_a_vendor_that_takes_plans_reads_any_scheme() -> None:
    assert {name for name, p in PROVIDERS.items() if p.credentials.caller.any_scheme} == {
        name for name, p in PROVIDERS.items() if p.plan is not None
    }
