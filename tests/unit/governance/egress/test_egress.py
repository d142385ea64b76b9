"""Egress's plain logic: host globs, address classification, the AI services catalogue, the
settings' errors, the connection record and the policy's egress rules cached as the call rules are."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.configuration.runtime import Loaded
from tollgate.governance.egress.ai_services import CATEGORIES, Service, Services, catalogue
from tollgate.governance.egress.egress import Egress, Globs, host_of, not_a_host, private_kind
from tollgate.governance.egress.egress_settings import EgressConfig, egress_glob
from tollgate.records.audit.connection_record import Connection, connection_record


def egress(**settings) -> Egress:
    return Loaded.build(parse_config({"egress": settings} if settings else {})).egress


@pytest.mark.parametrize(
    ("glob", "host", "matches"),
    [
        ("*.pastebin.com", "x.pastebin.com", True),
        ("*.pastebin.com", "pastebin.com", False),  # a `*` stands for a label's characters, never none of it
        ("*.pastebin.com", "a.b.pastebin.com", False),  # ... nor a '.'
        ("api-*.example.com", "api-eu.example.com", True),
        ("api-*.example.com", "api.example.com", False),
        ("Example.COM.", "example.com", True),
        ("localhost", "localhost", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.10", False),
        ("[::1]", "::1", True),
        ("10.0.0.5", "10.0.0.5", True),
        ("wiki", "wiki", True),
        ("wiki", "wiki.example.com", False),
        ("loc*host", "localhost", True),
        ("loc*host", "lochost", True),
        ("loc*host", "local.host", False),  # a `*` never takes a '.'
        ("*", "intranet", True),
        ("*", "intranet.example.com", False),
    ],
)
def test_a_glob_matches_the_hosts_it_names(glob, host, matches):
    assert (Globs([egress_glob(glob)]).match(host) is not None) is matches


@pytest.mark.parametrize(
    ("glob", "error"),
    [
        ("*.com", "write out its last two labels"),
        ("example.*", "write out its last two labels"),
        ("a..example.com", "is not a host name glob"),
        ("**.example.com", "write no two in a row"),  # `**` is a provider's own, never a configuration's
        ("ex ample.com", "is not a host name glob"),
        ("", "is not a host name glob"),
        ("loc**host", "write no two in a row"),
        ("loc/host", "is not a host name glob"),
    ],
)
def test_a_malformed_glob_is_refused_saying_why(glob, error):
    with pytest.raises(ValueError, match=error):
        egress_glob(glob)


@given(st.from_regex(r"[a-z0-9-]{1,20}\.[a-z0-9-]{1,10}\.(com|org|net)", fullmatch=True))
def test_a_host_written_out_matches_itself_and_no_other(host):
    globs = Globs([egress_glob(host)])
    assert globs.match(host) == host
    assert globs.match("x" + host) is None and globs.match(host + ".evil.example") is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # the cloud metadata address
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00:ec2::254", "unique local"),  # AWS's IPv6 metadata address
        ("fc00::1", "unique local"),
        ("::ffff:169.254.169.254", "link-local"),  # IPv4 written as IPv6
        ("::ffff:10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-global"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("nonsense", "unreadable"),
    ],
)
def test_addresses_are_classified(address, kind):
    assert private_kind(address) == kind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        # IPv4-mapped, ::ffff:0:0/96
        ("::ffff:a9fe:a9fe", "link-local"),
        ("::ffff:7f00:1", "loopback"),
        ("::ffff:808:808", None),
        # IPv4-translated (SIIT), ::ffff:0:0:0/96
        ("::ffff:0:a9fe:a9fe", "link-local"),
        ("::ffff:0:7f00:1", "loopback"),
        ("::ffff:0:a00:1", "private"),
        ("::ffff:0:808:808", None),
        # IPv4-compatible, ::/96: not `::` and `::1`, which are themselves
        ("::a9fe:a9fe", "link-local"),
        ("::7f00:1", "loopback"),
        ("::c0a8:101", "private"),
        ("::808:808", None),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::2", "private"),  # 0.0.0.2: "this network", 0.0.0.0/8
        # NAT64, 64:ff9b::/96
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("64:ff9b::808:808", None),
        # 6to4, 2002::/16
        ("2002:a9fe:a9fe::1", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("2002:808:808::1", None),
        # refused whole, whatever they carry
        ("64:ff9b:1::808:808", "local-use NAT64"),
        ("64:ff9b:1:ffff::a9fe:a9fe", "local-use NAT64"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("2001::1", "Teredo"),
        ("[2001:0:808:808::1]", "Teredo"),
    ],
)
def test_an_ipv4_address_inside_an_ipv6_one_is_judged(address, kind):
    assert private_kind(address) == kind


@pytest.mark.parametrize(
    ("host", "authority", "problem"),
    [
        ("api.example.com", "api.example.com:443", None),
        ("localhost", "localhost:22", None),
        ("under_score.example.com", "under_score.example.com:443", None),
        ("10.0.0.1", "10.0.0.1:443", None),
        ("::1", "[::1]:443", None),
        ("example.com.", "example.com.:443", None),
        ("zz", "[zz]:443", "[zz] is no host"),  # brackets hold an IPv6 address
        ("1.2.3.4", "[1.2.3.4]:443", "[1.2.3.4] is no host"),
        ("a..b", "a..b:443", "a..b is no host"),
        ("exa mple.com", "exa mple.com:443", "exa mple.com is no host"),
        ("-", "-:443", None),  # labels of letters, digits, '-' and '_', as the globs are
        ("", ":443", "'' is no host"),
        ("wiki", None, None),  # a plain HTTP request's, its target gone to origin form
    ],
)
def test_a_target_must_be_a_host(host, authority, problem):
    assert not_a_host(host, authority) == problem


def test_hosts_are_read_as_the_globs_are_written():
    assert host_of("API.Example.COM.") == "api.example.com"
    assert host_of("[::FFFF:7F00:1]") == "::ffff:127.0.0.1"


def test_the_catalogue_names_each_service_once_in_a_known_category():
    services = catalogue()
    names = [s.name for s, _ in services]
    assert len(names) == len(set(names))
    assert {s.category for s, _ in services} == set(CATEGORIES)
    assert all(globs for _, globs in services)


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("chatgpt.com", Service("chatgpt", "ai_chat")),
        ("claude.ai", Service("claude", "ai_chat")),
        ("gemini.google.com", Service("gemini", "ai_chat")),
        ("copilot.microsoft.com", Service("copilot", "ai_chat")),
        ("chat.deepseek.com", Service("deepseek", "ai_chat")),
        ("chat.mistral.ai", Service("mistral", "ai_chat")),
        ("www.perplexity.ai", Service("perplexity", "ai_search")),
        ("poe.com", Service("poe", "ai_chat")),
        ("api2.cursor.sh", Service("cursor", "ai_coding")),
        ("server.codeium.com", Service("windsurf", "ai_coding")),
        ("api.tabnine.com", Service("tabnine", "ai_coding")),
        ("api.individual.githubcopilot.com", Service("github_copilot", "ai_coding")),
        ("huggingface.co", Service("huggingface", "ai_models")),
        ("cdn-lfs.huggingface.co", Service("huggingface", "ai_models")),
        ("api.cohere.com", Service("cohere", "ai_api")),
        ("google.com", None),
        ("notcursor.com", None),
        ("cursor.com.evil.example", None),
    ],
)
def test_the_catalogue_names_a_hosts_service(host, service):
    assert Services().service_of(host) == service


def test_services_added_come_first_and_a_catalogued_name_keeps_its_category():
    services = Services({"cursor": ["cursor.internal.example"], "notes_ai": ["notes.example.com", "huggingface.co"]})
    assert services.service_of("cursor.internal.example") == Service("cursor", "ai_coding")
    assert services.service_of("notes.example.com") == Service("notes_ai", None)
    assert services.service_of("huggingface.co") == Service("notes_ai", None)
    assert services.service_of("cursor.com") == Service("cursor", "ai_coding")


def test_deny_globs_then_the_default_decide_by_name():
    rules = egress(deny=["*.pastebin.com"], default="deny", allow=["ok.example.com"])
    assert rules.by_name("x.pastebin.com", 443).reason == "x.pastebin.com matches egress.deny '*.pastebin.com'"
    assert rules.by_name("api.openai.com", 443).allowed  # a provider's host
    assert rules.by_name("ok.example.com", 443).allowed
    assert rules.by_name("other.example.com", 443).reason == (
        "other.example.com is not in egress.allow (egress.default: deny)"
    )
    assert egress(deny=["*.pastebin.com"]).by_name("other.example.com", 443).allowed  # default: allow


def test_a_deny_glob_wins_over_allow_and_over_a_providers_host():
    rules = egress(deny=["api.openai.com"], allow=["api.openai.com"])
    assert not rules.by_name("api.openai.com", 443).allowed


def test_a_private_address_is_exempt_only_by_allow_or_a_configured_upstream():
    loaded = Loaded.build(
        parse_config(
            {
                "providers": {"openai": {"upstream": "https://127.0.0.1:9443"}},
                "egress": {"allow": ["db.internal.example"]},
            }
        )
    )
    rules = loaded.egress
    assert not rules.needs_address("127.0.0.1", 9443)  # the configured upstream
    assert rules.needs_address("127.0.0.1", 9444)  # another port of its host
    assert not rules.needs_address("db.internal.example", 5432)
    assert rules.needs_address("metadata.google.internal", 80)
    assert rules.by_address("metadata.google.internal", "169.254.169.254").reason == (
        "metadata.google.internal resolves to 169.254.169.254, which is a link-local address"
        " (egress.private_addresses: deny)"
    )
    assert rules.by_address("example.com", "93.184.216.34").allowed
    assert not egress(private_addresses="allow").needs_address("localhost", 80)


def test_an_ungoverned_providers_host_passes_default_deny_but_is_resolved():
    loaded = Loaded.build(
        parse_config(
            {
                "providers": {"chatgpt": {"upstream": "https://127.0.0.1:9"}},
                "subscriptions": {"chatgpt": {"govern": False}},
                "egress": {"default": "deny"},
            }
        )
    )
    rules = loaded.egress
    assert rules.by_name("chatgpt.com", 443).allowed and not rules.governed("chatgpt.com")
    assert rules.needs_address("chatgpt.com", 443)


def test_copilots_older_completions_host_is_a_providers_host():
    """`copilot-proxy.githubusercontent.com` is Copilot's: `default: deny` lets it through, its calls
    read; with `govern: false` it passes too, tunnelled and resolved."""
    host = "copilot-proxy.githubusercontent.com"
    governed = egress(default="deny")
    assert governed.by_name(host, 443).allowed and governed.governed(host)
    assert not governed.by_name("raw.githubusercontent.com", 443).allowed
    tunnelled = Loaded.build(
        parse_config({"subscriptions": {"copilot": {"govern": False}}, "egress": {"default": "deny"}})
    ).egress
    assert tunnelled.by_name(host, 443).allowed and not tunnelled.governed(host)
    assert tunnelled.needs_address(host, 443)


def decided(decision):
    """`Egress.decide`'s decision, awaited where it is awaitable."""
    import asyncio

    if hasattr(decision, "__await__"):
        return asyncio.run(_awaited(decision))
    return decision


async def _awaited(decision):
    return await decision


def resolver(address: str | None):
    """A resolver giving one address; None: the name resolves to none."""
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> str:
        asked.append((host, port))
        if address is None:
            raise OSError(f"{host} resolves to no address")
        return address

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


def test_egress_decides_a_connection_in_one_call_target_then_name_then_address():
    from tollgate.governance.egress.egress import Asked

    rules = egress(deny=["*.pastebin.com"])
    never = resolver("203.0.113.9")
    bad = decided(rules.decide(Asked("x y", 443, target=("x y", "x y:443")), None, never))
    assert (bad.allowed, bad.bad_target, bad.deny_reasons) == (False, True, ("x y is no host",))
    denied = decided(rules.decide(Asked("x.pastebin.com", 443, target=("x.pastebin.com", None)), None, never))
    assert (denied.allowed, denied.bad_target) == (False, False)
    assert denied.reason == "x.pastebin.com matches egress.deny '*.pastebin.com'"
    assert never.asked == []  # decided by name: nothing looked up
    private = resolver("169.254.169.254")
    metadata = decided(rules.decide(Asked("metadata.google.internal", 80), None, private))
    assert (metadata.allowed, metadata.address, private.asked) == (
        False,
        "169.254.169.254",
        [("metadata.google.internal", 80)],
    )
    assert metadata.deny_reasons == (
        "metadata.google.internal resolves to 169.254.169.254, which is a link-local address"
        " (egress.private_addresses: deny)",
    )
    lost = decided(rules.decide(Asked("gone.example.com", 443), None, resolver(None)))
    assert (lost.allowed, lost.error, lost.address) == (False, "cannot resolve gone.example.com", None)
    assert lost.reason == "gone.example.com cannot be resolved (OSError), so its address cannot be decided"
    hugging = decided(rules.decide(Asked("huggingface.co", 443), None, resolver("18.1.2.3")))
    assert (hugging.allowed, hugging.address, hugging.service and hugging.service.name) == (
        True,
        "18.1.2.3",
        "huggingface",
    )
    # A captured connection is decided on the address its client dialled: nothing is looked up.
    dialled = decided(rules.decide(Asked("notes.example.com", 443, address="10.0.0.5"), None))
    assert (dialled.allowed, dialled.address) == (False, "10.0.0.5")


def test_egress_asks_the_policy_last_on_the_address_decided(tmp_path):
    pytest.importorskip("opa_bindings")
    import asyncio

    from tollgate.governance.egress.egress import Asked
    from tollgate.governance.policy.policy import Policy

    rules = tmp_path / "egress.rego"
    rules.write_text(
        'package tollgate.egress\n\ndeny contains "not from bob" if input.client == "bob"\n\n'
        'deny contains "not there" if input.address == "93.184.216.34"\n'
    )
    policy = Policy([rules], apart=True)  # as the proxy's: decided in its worker process
    gate = egress(deny=["*.pastebin.com"])

    async def decide(host: str, client: str, address: str):
        decision = gate.decide(Asked(host, 443, client=client), policy, resolver(address))
        return await decision if hasattr(decision, "__await__") else decision

    async def all_of_them():
        try:
            return [
                await decide("x.pastebin.com", "bob", "93.184.216.34"),
                await decide("example.com", "sam", "93.184.216.34"),
                await decide("example.com", "bob", "93.184.216.35"),
                await decide("example.com", "sam", "93.184.216.35"),
            ]
        finally:
            await policy.aclose()

    by_name, there, bob, sam = asyncio.run(all_of_them())
    assert by_name.deny_reasons == ("x.pastebin.com matches egress.deny '*.pastebin.com'",)  # the policy not asked
    assert (there.allowed, there.reason, there.deny_reasons) == (False, "egress policy: not there", ("not there",))
    assert (bob.allowed, bob.deny_reasons, bob.address) == (False, ("not from bob",), "93.184.216.35")
    assert (sam.allowed, sam.address) == (True, "93.184.216.35")


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError, match=r"egress\.allow\.1: '\*\.com': write out its last two labels"):
        parse_config({"egress": {"allow": ["ok.example.com", "*.com"]}})
    with pytest.raises(ConfigError, match=r"egress\.recrod: unknown key"):
        parse_config({"egress": {"recrod": "all"}})
    with pytest.raises(ConfigError, match=r"egress\.record: Input should be 'ai', 'all' or 'none'"):
        parse_config({"egress": {"record": "some"}})
    with pytest.raises(ConfigError, match=r"egress\.services\.Notes: 'Notes': a service's name is lower-case"):
        parse_config({"egress": {"services": {"Notes": ["notes.example.com"]}}})
    with pytest.raises(ConfigError, match=r"egress\.services\.notes: Tuple should have at least 1 item"):
        parse_config({"egress": {"services": {"notes": []}}})
    assert parse_config({}).egress == EgressConfig()


def test_the_connection_record_holds_its_fields_and_nothing_else():
    connection = Connection("r1", "huggingface.co", 443, started=1_800_000_000.0, source="10.0.0.7:51000")
    connection.address, connection.service, connection.category = "18.1.2.3", "huggingface", "ai_models"
    connection.bytes_sent, connection.bytes_received, connection.ended = 517, 4096, 1_800_000_001.25
    assert connection_record(connection) == {
        "event": "connection",
        "ts": "2027-01-15T08:00:00.000Z",
        "request_id": "r1",
        "client": None,
        "auth": None,
        "source": "10.0.0.7:51000",
        "host": "huggingface.co",
        "port": 443,
        "address": "18.1.2.3",
        "service": "huggingface",
        "category": "ai_models",
        "decision": "allow",
        "deny_reasons": [],
        "bytes_sent": 517,
        "bytes_received": 4096,
        "duration_ms": 1250.0,
        "error": None,
        "refusal": None,
    }


def test_the_egress_policy_is_cached_on_the_facts_it_reads(tmp_path):
    pytest.importorskip("opa_bindings")
    from tollgate.governance.policy.policy import CALL_DECISION, EGRESS_DECISION, Policy, egress_facts, whole

    rules = tmp_path / "egress.rego"
    rules.write_text(
        'package tollgate.egress\n\ndeny contains "no paste" if input.host == "pastebin.com"\n\npackage_ok := true\n'
    )
    calls = tmp_path / "calls.rego"
    calls.write_text('package tollgate\n\ndeny contains "x" if input.model == "m"\n')
    policy = Policy([rules, calls])
    first = egress_facts(None, None, "10.0.0.7:51000", "pastebin.com", 443, None, None)
    again = egress_facts(
        None, None, "10.0.0.7:51001", "pastebin.com", 443, None, None
    )  # another port: no rule reads it
    assert policy.decide(EGRESS_DECISION, first).deny_reasons == ("no paste",)
    assert policy._cache is not None and len(policy._cache) == 1
    assert policy.decide(EGRESS_DECISION, again).deny_reasons == ("no paste",)
    assert len(policy._cache) == 1  # a hit
    assert policy.decide(EGRESS_DECISION, egress_facts(None, None, None, "example.com", 443, None, None)).allowed
    # The call rules never decide a connection.
    assert policy.decide(whole(CALL_DECISION), {"model": "m"}).deny_reasons == ("x",)


def test_connections_are_counted_by_service_category_and_decision():
    from prometheus_client import generate_latest

    from tollgate.records.telemetry.metrics import MetricSet

    metrics = MetricSet()
    metrics.connection_decided("huggingface", "ai_models", "allow")
    metrics.connection_decided("huggingface", "ai_models", "allow")
    metrics.connection_decided(None, None, "deny")
    metrics.connection_closed("huggingface", "ai_models", 517, 4096)
    text = generate_latest(metrics.registry).decode()
    assert 'tollgate_connections_total{category="ai_models",decision="allow",service="huggingface"} 2.0' in text
    assert 'tollgate_connections_total{category="",decision="deny",service=""} 1.0' in text
    assert (
        'tollgate_connection_bytes_total{category="ai_models",direction="received",service="huggingface"} 4096.0'
        in text
    )


def test_a_refused_connections_console_line_names_who_where_and_why() -> None:
    from tollgate.records.audit.connection_record import Connection, connection_line

    refused = Connection("r-1", "fd00::1", 443, client="bob", deny_reasons=("fd00::1 is a private address", "x"))
    assert (
        connection_line(refused) == "Tollgate: bob · ⛔ egress_denied · [fd00::1]:443 · fd00::1 is a private address; x"
    )
    assert connection_line(Connection("r-2", "paste.example.net", 443)) == (
        "Tollgate: (anonymous) · ⛔ egress_denied · paste.example.net:443"
    )
