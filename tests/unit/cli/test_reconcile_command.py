"""`tollgate reconcile` in process, against a stand-in of OpenAI's admin API and an audit file
written as Tollgate writes it: what it refuses before asking a vendor (exit 2, naming the field or
the variable, never a value), and the pricing both sides share."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from tests.support.admin_apis import Key, OpenAIAdmin, Usage, hint_of
from tests.support.fake_upstream import FakeUpstream

from tollgate.cli.main import main
from tollgate.cli.reconcile_command import pricer
from tollgate.common.fingerprint import fingerprint
from tollgate.governance.limits.pricing import Prices
from tollgate.records.reconcile.gateway_counts import Counted

REAL = "sk-proj-held-unit-0123456789abcdWXYZ"
ADMIN = "sk-admin-unit-secret-000111222333"
DAY = date(2026, 11, 20)


def write(tmp_path: Path, **extra) -> Path:
    data = {"providers": {"openai": {"keys": ["${OPENAI_KEY}"]}}, "audit": {"path": str(tmp_path / "audit.jsonl")},
            **extra}  # fmt: skip
    path = tmp_path / "tollgate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def admin(upstream_ca, upstream_ca_pem):
    api = OpenAIAdmin(ADMIN, {"proj_a": "Platform"})
    api.keys = [Key("key_a", "gateway", "proj_a", hint_of(REAL, 8, 4))]
    api.usage = [Usage(DAY, "key_a", "gpt-4o-mini-2024-07-18", 1000, 100, requests=1)]
    server = FakeUpstream(upstream_ca, api.handle)
    yield {"admin_key": "${OPENAI_ADMIN_KEY}", "base_url": server.url, "ca_file": str(upstream_ca_pem)}
    server.close()


def test_without_a_vendor_named_it_exits_2(tmp_path, capsys):
    assert main(["reconcile", "--config", str(write(tmp_path))]) == 2
    assert "no reconcile: vendor named" in capsys.readouterr().err


def test_an_unset_key_of_a_vendor_compared_is_named(tmp_path, capsys, monkeypatch, admin):
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN)
    monkeypatch.delenv("OPENAI_KEY", raising=False)
    assert main(["reconcile", "--config", str(write(tmp_path, reconcile={"openai": admin}))]) == 2
    err = capsys.readouterr().err
    assert "providers.openai.keys.0: environment variable OPENAI_KEY is not set" in err


def test_a_span_backwards_exits_2(tmp_path, capsys, monkeypatch, admin):
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN)
    monkeypatch.setenv("OPENAI_KEY", REAL)
    path = write(tmp_path, reconcile={"openai": admin})
    assert main(["reconcile", "--config", str(path), "--since", "2026-11-21", "--until", "2026-11-20"]) == 2
    assert main(["reconcile", "--config", str(path), "--since", "yesterday"]) == 2
    assert "is not a day" in capsys.readouterr().err


def test_a_call_in_the_audit_meets_the_vendors_count(tmp_path, capsys, monkeypatch, admin):
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN)
    monkeypatch.setenv("OPENAI_KEY", REAL)
    path = write(tmp_path, reconcile={"openai": admin})
    call = {"event": "llm_call", "ts": "2026-11-20T10:00:00.000Z", "provider": "openai", "model": "gpt-4o-mini",
            "upstream_key": fingerprint(REAL), "status": 200, "input_tokens": 1000, "cached_tokens": 0,
            "output_tokens": 100}  # fmt: skip
    (tmp_path / "audit.jsonl").write_text(json.dumps(call) + "\n")
    assert main(["reconcile", "--config", str(path), "--since", "2026-11-20", "--until", "2026-11-20", "--json"]) == 0
    out, err = capsys.readouterr()
    [row] = json.loads(out)["rows"]
    assert (row["key_id"], row["model"], row["status"], row["tollgate"]["cost_usd"]) == (
        "key_a", "gpt-4o-mini", "match", 0.00021)  # fmt: skip
    assert ADMIN not in out + err and REAL not in out + err
    kept = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [r["event"] for r in kept] == [
        "llm_call",
        "tollgate_started",
        "reconciliation",
        "tollgate_stopped",
        "audit_checkpoint",
    ]  # a run of its own, closed as any


def test_a_days_tokens_are_priced_at_the_base_rate_not_a_calls_tier():
    """Claude's long-context tier is a call's: 300k tokens in a day of short calls pay the base rate."""
    price = pricer(Prices(()))
    day = price("anthropic", "claude-sonnet-4-5", DAY, Counted(300_000, 0, 0, 0, 1))
    assert day == Decimal("0.9")  # $3 per million
