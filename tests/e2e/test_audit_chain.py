"""The audit proves itself: calls through a real mitmdump with a signing key, then `tollgate audit
verify` finds the file whole, and a copy with one byte changed not."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.support.cli import run_tollgate

ALICE = "tg-alice-0123456789"


def verify(*args: str) -> subprocess.CompletedProcess:
    return run_tollgate("audit", "verify", *args)


def key_files(directory: Path) -> tuple[Path, Path]:
    """A new Ed25519 signing key in `directory`: its private half's file and its public half's."""
    key = Ed25519PrivateKey.generate()
    private, public = directory / "audit.key", directory / "audit.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def test_calls_then_stop_then_verify(start_gateway, tmp_path: Path) -> None:
    private, public = key_files(tmp_path)
    gw = start_gateway(
        lambda urls: {
            "providers": {"openai": {"upstream": urls["openai"], "keys": ["sk-real-openai-0001"]}},
            "clients": [{"name": "alice", "keys": [ALICE]}],
            "audit": {"signing_key": str(private), "checkpoint_s": 1},
        },
        providers=("openai",),
    )
    calls = """
        from openai import OpenAI
        client = OpenAI(api_key="{key}", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "again"}}])
        report(tokens=r.usage.total_tokens)
    """
    assert gw.run(calls.format(key=ALICE)) == {"tokens": 28}
    gw.new_audit(2)
    time.sleep(1.5)  # a timed checkpoint
    refused = """
        import openai
        client = openai.OpenAI(api_key="tg-unknown-0000000000", max_retries=0)
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        except openai.AuthenticationError as e:
            report(status=e.status_code)
    """
    assert gw.run(refused) == {"status": 401}  # refused: audited all the same
    assert gw.run(calls.format(key=ALICE)) == {"tokens": 28}
    gw.new_audit(2)
    gw.proxy.stop()  # SIGTERM: drained, then the stopped record and the last checkpoint

    records = [json.loads(line) for line in gw.audit_path.read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events[0] == "tollgate_started" and events[-2:] == ["tollgate_stopped", "audit_checkpoint"]
    assert events.count("llm_call") == 5 and events.count("audit_checkpoint") >= 2
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert all(list(r)[-1] == "chain" for r in records)

    done = verify(str(gw.audit_path), "--key", str(public))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"whole: {len(records)} records, 1 instance, 1 run,"), done.stdout

    # A copy with one byte of one record changed.
    copy = tmp_path / "audit-copy.jsonl"
    lines = gw.audit_path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"status":200', b'"status":500')
    copy.write_bytes(b"".join(lines))
    done = verify(str(copy), "--key", str(public))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{copy}:3: changed: its chain does not match its content and the record before it"
    ]


def test_calls_of_every_kind_are_chained(start_gateway, upstream_ca) -> None:
    """An HTTP call, a response on the Responses WebSocket and an MCP server's requests: one chain,
    whole."""
    from tests.support.fake_realtime import FakeRealtime, responding, responses_usage
    from tests.support.mcp_upstream import McpUpstream

    socket_fake, mcp = FakeRealtime(upstream_ca), McpUpstream(upstream_ca)
    mcp_url = "https://mcp.example.test/mcp"
    try:
        socket_fake.script = responding(["Hello."], [responses_usage(10, 2)])
        gw = start_gateway(
            lambda urls: {
                "providers": {
                    "openai": {"upstream": socket_fake.url, "keys": ["sk-real-openai-0001"]},
                    "anthropic": {"upstream": urls["anthropic"], "keys": ["sk-ant-real-0001"]},
                },
                "clients": [{"name": "alice", "keys": [ALICE]}],
                "mcp": {"servers": [{"name": "notes", "url": mcp_url, "upstream": mcp.url}]},
            },
            providers=("anthropic",),
        )
        done = gw.run(f"""
            import asyncio, anthropic
            from openai import AsyncOpenAI
            from mcp import Client
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            async def main():
                message = anthropic.Anthropic(api_key="{ALICE}", max_retries=0).messages.create(
                    model="claude-sonnet-4-5", max_tokens=64, messages=[{{"role": "user", "content": "hi"}}])
                async with AsyncOpenAI(api_key="{ALICE}", max_retries=0).responses.connect() as conn:
                    await conn.response.create(model="gpt-4o", input="hi")
                    while (await asyncio.wait_for(conn.recv(), 20)).type != "response.completed":
                        pass
                http = create_mcp_http_client(headers={{"Authorization": "Bearer {ALICE}"}})
                async with http:
                    async with Client(streamable_http_client("{mcp_url}", http_client=http), mode="legacy") as c:
                        added = await c.call_tool("add", {{"a": 1, "b": 2}})
                return [message.usage.output_tokens > 0, [x.text for x in added.content]]

            report(done=asyncio.run(main()))
        """)
        assert done == {"done": [True, ["3"]]}
        gw.proxy.stop()
    finally:
        socket_fake.close()
        mcp.close()
    records = [json.loads(line) for line in gw.audit_path.read_text().splitlines()]
    kinds = {(r["event"], r.get("transport"), r.get("method")) for r in records}
    assert ("llm_call", "http", "POST") in kinds and ("mcp_call", None, "tools/call") in kinds
    assert any(
        r["event"] == "llm_call" and r["transport"] == "websocket" and r["endpoint"] == "responses" for r in records
    )
    whole = verify(str(gw.audit_path))
    assert whole.returncode == 0, whole.stdout + whole.stderr


def test_a_cut_head_is_found_alone_and_a_cut_tail_against_the_collectors_copy(
    tmp_path: Path, upstream_ca, upstream_ca_pem, confdir, bundle
) -> None:
    """Two runs of one instance, each shipped to a collector as it is written. The first run
    removed: the file alone shows it. The last run removed: the file alone cannot tell; the
    collector's copy (its file exporter's OTLP JSON) does."""
    import yaml
    from tests.support.canned import provider_answers
    from tests.support.clients import run_client
    from tests.support.fake_upstream import FakeUpstream
    from tests.support.otlp import Collector
    from tests.support.proxy import Mitmdump

    private, public = key_files(tmp_path)
    fake, collector = FakeUpstream(upstream_ca, provider_answers), Collector.start()
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "tollgate.yaml"
    config.write_text(yaml.safe_dump({
        "providers": {"openai": {"upstream": fake.url, "keys": ["sk-real-openai-0001"]}},
        "clients": [{"name": "alice", "keys": [ALICE]}],
        "audit": {"path": str(audit), "signing_key": str(private), "otlp": {"endpoint": collector.url}},
    }))  # fmt: skip
    call = f"""
        import openai
        r = openai.OpenAI(api_key="{ALICE}", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
        report(tokens=r.usage.total_tokens)
    """
    try:
        for _ in range(2):  # two runs, each: a call, then SIGTERM (its stop's checkpoint shipped)
            proxy = Mitmdump(tmp_path, confdir, upstream_ca_pem, config, env={"TOLLGATE_INSTANCE": "gw-1"})
            try:
                proxy.wait_ready()
                assert "tokens" in run_client(call, proxy.proxy_url, bundle)
            finally:
                proxy.stop()
        lines = audit.read_bytes().splitlines(keepends=True)
        collector.wait_logs(len(lines))
    finally:
        collector.close()
        fake.close()
    # The collector's file exporter: one ExportLogsServiceRequest a line, each log record's body a line.
    export = tmp_path / "export.json"
    bodies = [{"body": {"stringValue": log["body"]}} for log in collector.logs]
    export.write_text(json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": bodies}]}]}) + "\n")
    whole = verify(str(audit), "--key", str(public), "--against", str(export))
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert whole.stdout.splitlines()[0].startswith(f"whole: {len(lines)} records, 1 instance, 2 runs,")
    assert whole.stdout.splitlines()[1] == "the copy's 2 checkpoints are all in the files"

    second = next(i for i, line in enumerate(lines) if i and b'"tollgate_started"' in line)
    head_cut, tail_cut = tmp_path / "head-cut.jsonl", tmp_path / "tail-cut.jsonl"
    head_cut.write_bytes(b"".join(lines[second:]))
    tail_cut.write_bytes(b"".join(lines[:second]))
    done = verify(str(head_cut), "--key", str(public))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{head_cut}:1: previous_chain names a record of gw-1 that the files do not hold: its records before this"
        " run are missing (give every file since the instance began)"
    ]
    alone = verify(str(tail_cut), "--key", str(public))
    assert alone.returncode == 0, alone.stdout  # what a file alone cannot tell
    done = verify(str(tail_cut), "--key", str(public), "--against", str(export))
    assert done.returncode == 1
    seq = json.loads(lines[-1])["seq"]
    assert done.stdout.splitlines() == [
        f"{export}:1: the copy holds a checkpoint of gw-1 (seq {seq}) that the files do not: records after the"
        " files' last ones, or a run, removed"
    ]
