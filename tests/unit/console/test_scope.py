"""Who sees which record (`scope.py`): security everything; a lead the records whose groups meet
the groups it leads, and its own; a person their clients', their plan account's and their JWT
client's; records without a client and lines that are no record, security's only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.console_cursors import answer as plain_answer

from tollgate.configuration.config import parse_config
from tollgate.console.follow import AuditFiles
from tollgate.console.index import NO_ORIGIN, Index, Origin
from tollgate.console.scope import Scope, ScopeRules, with_instance
from tollgate.console.viewer import TOKEN_HOLDER, Viewer
from tollgate.console.views import Forbidden, Views

CONFIG = {
    "clients": [
        {"name": "alice", "keys": ["tg-alice-0000000000000001"], "groups": ["research"],
         "people": ["Alice@Example.com"]},
        {"name": "bob", "keys": ["tg-bob-00000000000000001"], "groups": ["infra"], "people": ["bob@example.com"]},
        {"name": "shared", "keys": ["tg-shared-0000000000001"], "people": ["alice@example.com", "bob@example.com"]},
    ],
    "identity": {"jwt": [{"issuer": "https://ci.example", "audience": "tollgate", "algorithms": ["HS256"],
                          "secret": "s" * 32, "client_prefix": "ci:"}]},
}  # fmt: skip
RULES = ScopeRules.of(parse_config(CONFIG, {}))
ALICE = Viewer("self", "alice@example.com")
LEAD = Viewer("lead", "lena@example.com", leads=frozenset({"research"}))


def origin(client: str | None, groups: tuple[str, ...] | None = None, account: str | None = None,
           instance: str | None = "pod-0", jwt: bool = False) -> Origin:  # fmt: skip
    return Origin(client, groups, account, instance, jwt)


def test_the_rules_read_people_groups_and_prefixes_from_the_configuration() -> None:
    assert RULES.people == {"alice@example.com": {"alice", "shared"}, "bob@example.com": {"bob", "shared"}}
    assert RULES.groups == {"alice": ("research",), "bob": ("infra",), "shared": ()}
    assert RULES.prefixes == ("ci:",)


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (origin("alice", ("research",)), True),  # a client whose people name the e-mail (another case)
        (origin("shared"), True),
        (origin("bob", ("infra",)), False),
        (origin("bob", ("infra",), account="alice@example.com"), True),  # a plan call of the person's account
        (origin(None, (), account="alice@example.com"), True),  # no client, but the person's own account
        (origin(None, ()), False),  # anonymous: security's only
        (origin("ci:Alice@Example.com", jwt=True), True),  # a JWT client named by the e-mail, less its prefix
        (origin("ci:alice@example.com", jwt=False), False),  # the same name, not from a JWT
        (origin("alice@example.com", jwt=True), False),  # no prefix the configuration names
        (origin("ci:alice@example.com.evil", jwt=True), False),
        (NO_ORIGIN, False),  # a line that is no record
    ],
)
def test_a_person_sees_their_own_records(seen: Origin, expected: bool) -> None:
    assert Scope(ALICE, RULES).sees(seen) is expected
    assert Scope(TOKEN_HOLDER, RULES).sees(seen) is True


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (origin("bob", ("research", "infra")), True),  # groups as the record names them
        (origin("bob", ("infra",)), False),
        (origin("alice"), True),  # a record naming no groups (a connection): its client's configured groups
        (origin("bob"), False),
        (origin("alice", ()), False),  # a record naming no group: none
        (origin(None, ("research",)), False),  # no client: security's only
        (origin("bob", ("infra",), account="Lena@example.com".lower()), True),  # its own
        (NO_ORIGIN, False),
    ],
)
def test_a_lead_sees_the_records_of_the_groups_it_leads_and_its_own(seen: Origin, expected: bool) -> None:
    assert Scope(LEAD, RULES).sees(seen) is expected


def test_no_e_mail_and_no_clients_see_nothing() -> None:
    for viewer in (Viewer("self"), Viewer("self", "nobody@example.com"), Viewer("lead", "x@example.com")):
        scope = Scope(viewer, RULES)
        assert not any(scope.sees(o) for o in (origin("alice"), origin(None), origin("x", ("research",)), NO_ORIGIN))


def lines(*records: dict | str) -> bytes:
    return b"".join((r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in records)


def test_origins_are_read_from_each_record_and_the_choice_grows_with_them() -> None:
    index = Index()
    data = lines(
        {"event": "llm_call", "ts": "2026-11-01T08:00:00Z", "client": "alice", "groups": ["research"],
         "instance": "pod-0", "auth": "virtual_key"},
        {"event": "llm_call", "ts": "2026-11-01T08:00:00Z", "client": None, "groups": [],
         "account": "ALICE@example.com", "instance": "pod-1", "auth": "subscription"},
        "not json",
        {"event": "llm_call", "ts": "2026-11-01T08:00:00Z", "client": "bob", "groups": "infra", "instance": 3,
         "auth": ["jwt"]},  # fields of another shape: no groups, no instance, no JWT
    )  # fmt: skip
    scope = Scope(ALICE, RULES)
    index.add_lines(0, 0, data, len(data), {})
    assert list(index.origins) == [1, 2, 0, 3]
    assert index.origin_list == [
        NO_ORIGIN, origin("alice", ("research",)), origin(None, (), "alice@example.com", "pod-1"),
        origin("bob", (), instance=None),
    ]  # fmt: skip
    assert scope.chosen(index) == {1, 2}
    assert with_instance(scope.chosen(index), index, "pod-1") == {2}
    assert with_instance(None, index, "pod-0") == {1}
    assert with_instance(None, index, "pod-9") == frozenset()
    more = lines({"event": "llm_call", "ts": "2026-11-01T09:00:00Z", "client": "shared", "instance": "pod-1"})
    index.add_lines(0, len(data), more, len(more), {})
    assert scope.chosen(index) == {1, 2, 4}
    assert Scope(TOKEN_HOLDER, RULES).chosen(index) is None


def test_audit_is_securitys_and_me_says_who_and_what(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(lines({"event": "llm_call", "ts": "2026-11-01T08:00:00Z", "client": "bob", "instance": "p"}))
    audit = AuditFiles([path])
    audit.catch_up()
    views = Views(audit, rules=RULES)
    with pytest.raises(Forbidden):
        views.answer("/api/audit", {}, ALICE)
    assert [row["records"] for row in views.answer("/api/audit", {})] == [1]
    assert [row["instance"] for row in views.answer("/api/audit", {"instance": ["p"]})] == ["p"]
    assert views.answer("/api/audit", {"instance": ["q"]}) == []
    assert views.answer("/api/me", {}, Viewer("self", "alice@example.com", "Alice")) == {
        "email": "alice@example.com", "name": "Alice", "role": "self", "clients": ["alice", "shared"],
        "audit": "checking",
    }  # fmt: skip
    while audit.verify_pending():
        pass
    me = views.answer("/api/me", {})
    assert (me["role"], me["clients"], me["audit"]) == ("security", None, "fault")  # no chain: a fault
    assert views.answer("/api/me", {}, LEAD)["clients"] == ["alice"]  # the clients of research


def test_a_restart_keeps_the_origins_and_an_index_of_the_version_before_is_read_afresh(tmp_path: Path) -> None:
    from tollgate.console import saved

    path, remember = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.console-index"
    path.write_bytes(lines(*(
        {"event": "llm_call", "ts": f"2026-11-0{day}T08:00:00Z", "client": client, "groups": [group],
         "instance": instance, "provider": "openai", "model": "m", "input_tokens": 1, "output_tokens": 1,
         "cost_usd": 0.5, "decision": "allow", "deny_reasons": [], "findings": {}}
        for day in range(1, 5) for client, group in (("alice", "research"), ("bob", "infra"))
        for instance in ("pod-0", "pod-1")
    )))  # fmt: skip
    first = AuditFiles([path], remember=remember)
    first.catch_up()
    first.close()

    def answers(audit: AuditFiles) -> list:
        views = Views(audit, rules=RULES)
        return [plain_answer(views, p, q, v) for v in (TOKEN_HOLDER, ALICE, LEAD)
                for p, q in (("/api/people", {}), ("/api/spend", {"by": ["client"]}), ("/api/inventory", {}),
                             ("/api/events", {"instance": ["pod-1"]}), ("/api/spend", {"instance": ["pod-0"]}))]  # fmt: skip

    restarted = AuditFiles([path], remember=remember)
    restarted.catch_up()
    assert restarted.saved_records == 16
    assert restarted.index.origin_list == first.index.origin_list
    assert [p["client"] for p in Views(restarted, rules=RULES).answer("/api/people", {}, ALICE)] == ["alice"]
    assert answers(restarted) == answers(first)
    restarted.close()
    old = remember.read_bytes().replace(saved.MAGIC, b"tollgate console index 3\n", 1)  # sums per client, not origin
    remember.write_bytes(old)
    again = AuditFiles([path], remember=remember)
    again.catch_up()
    assert again.saved_records == -1  # set aside: read afresh from the audit
    assert answers(again) == answers(first)
    again.close()


def test_the_server_answers_a_forbidden_path_403_and_the_live_stream_by_instance(tmp_path: Path) -> None:
    import threading
    import urllib.error
    import urllib.request

    from tollgate.console.server import Console

    class AsAlice(Views):
        """The views as alice asks them (the server's sign-in sets the viewer; here, alice)."""

        def answer(self, path, query, viewer=ALICE):  # type: ignore[no-untyped-def]
            return super().answer(path, query, ALICE)

    path = tmp_path / "audit.jsonl"
    path.write_bytes(lines({"event": "llm_call", "ts": "2026-11-01T08:00:00Z", "client": "alice", "instance": "a"}))
    audit = AuditFiles([path])
    audit.catch_up()
    token = "a-console-token-of-test-0001"
    console = Console(audit, AsAlice(audit, rules=RULES), "127.0.0.1", 0, token)
    thread = threading.Thread(target=console.serve, daemon=True)
    thread.start()
    base, auth = f"http://127.0.0.1:{console.port}", {"Authorization": f"Bearer {token}"}
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{base}/api/audit", headers=auth), timeout=5)
        assert (refused.value.code, json.loads(refused.value.read())) == (403, {"error": "forbidden"})
        with urllib.request.urlopen(urllib.request.Request(f"{base}/api/me", headers=auth), timeout=5) as answer:
            assert json.loads(answer.read())["clients"] == ["alice", "shared"]
        # The live stream: records written after it opened, of the instance asked for only.
        live = urllib.request.urlopen(
            urllib.request.Request(f"{base}/api/events/live?instance=b", headers=auth), timeout=5
        )
        with live, path.open("ab") as f:
            f.write(lines(*({"event": "llm_call", "ts": "2026-11-01T09:00:00Z", "client": "alice", "instance": i,
                             "request_id": i} for i in ("a", "b"))))  # fmt: skip
            f.flush()
            for _ in range(50):  # the follower reads the file every 0.2 s
                line = live.readline()
                if line.startswith(b"data: "):
                    break
            assert json.loads(line[len(b"data: ") :])["request_id"] == "b"
    finally:
        console.stop()
        thread.join(timeout=5)


KELVIN = "\u212a"  # KELVIN SIGN: Unicode's lower() makes it k


def test_e_mails_compare_in_ascii_case_only_everywhere() -> None:
    """An address with a look-alike capital is not the plain one's: not in the rules, not as a plan
    account in the records, not as a JWT client's name, not as a viewer."""
    config = {"clients": [{"name": "kate", "keys": ["tg-kate-0000000000000001"], "people": ["KATE@example.com"]},
                          {"name": "kelvin", "keys": ["tg-kelvin-00000000000001"],
                           "people": [f"{KELVIN}ate@example.com"]}],
              "identity": CONFIG["identity"]}  # fmt: skip
    rules = ScopeRules.of(parse_config(config, {}))
    assert rules.people == {"kate@example.com": {"kate"}, f"{KELVIN}ate@example.com": {"kelvin"}}
    kate = Scope(Viewer("self", "kate@example.com"), rules)
    index = Index()
    data = lines(
        {"event": "llm_call", "ts": "2026-11-01T08:00:00Z", "client": None, "account": f"{KELVIN}ATE@example.com",
         "auth": "subscription"},
        {"event": "llm_call", "ts": "2026-11-01T08:00:00Z", "client": None, "account": "Kate@Example.com",
         "auth": "subscription"},
    )  # fmt: skip
    index.add_lines(0, 0, data, len(data), {})
    assert [o.account for o in index.origin_list[1:]] == [f"{KELVIN}ate@example.com", "kate@example.com"]
    assert kate.chosen(index) == {2}
    assert kate.sees(origin("kate")) and not kate.sees(origin("kelvin"))
    assert kate.sees(origin("ci:Kate@example.com", jwt=True))
    assert not kate.sees(origin(f"ci:{KELVIN}ate@example.com", jwt=True))
    assert not Scope(Viewer("self", f"{KELVIN}ATE@example.com"), rules).sees(origin("kate"))
