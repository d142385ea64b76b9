"""The audit's export to an OpenTelemetry collector (`audit.otlp`), without mitmproxy: a record as
a log record, the position file, the file read line by line across rotations, the back-off, and the
exporter's thread against the stand-in collector (down, 503, slow, refusing)."""

from __future__ import annotations

import hashlib
import os
import time
from functools import partial
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from tests.support.otlp import Collector, value_of
from tests.unit import audit_lines

from tollgate.configuration.config import ConfigError, parse_config
from tollgate.records.senders.audit_otlp import AuditExport, outcome_of, position_path
from tollgate.records.senders.file_sender import Position, Tail, backoff, read_position, start_position, write_position
from tollgate.records.senders.otlp_logs import encode_log_record, encode_value, export_body, record_id

LLM_CALL = {
    "event": "llm_call",
    "instance": "host/w1",
    "ts": "2026-11-22T08:30:00.123Z",
    "request_id": "r-1",
    "client": "alice",
    "auth": "virtual_key",
    "groups": ["research", "eu"],
    "provider": "openai",
    "endpoint": "chat.completions",
    "method": "POST",
    "host": "api.openai.com",
    "path": "/v1/chat/completions",
    "requested_model": "gpt-4o",
    "model": "gpt-4o-mini",
    "stream": False,
    "max_tokens": 256,
    "decision": "allow",
    "deny_reasons": [],
    "findings": {"pii.email": 2},
    "status": 200,
    "latency_ms": 12.5,
    "input_tokens": 11,
    "output_tokens": 7,
    "cached_tokens": None,
    "finish_reason": "stop",
    "cost_usd": 0.000123,
    "error": None,
}


def log_record(line: bytes, observed_ns: int) -> tuple[str | None, LogRecord]:
    """The line's log record as written, read back with opentelemetry-proto's classes."""
    instance, data = encode_log_record(line, observed_ns)
    return instance, LogRecord.FromString(data)


def request_of(lines: list[bytes]) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest.FromString(export_body(lines, 0))


def bodies(request: ExportLogsServiceRequest) -> list[str]:
    return [log.body.string_value for r in request.resource_logs for s in r.scope_logs for log in s.log_records]


def line_of(record: dict) -> bytes:
    return orjson.dumps(record)


def attributes_of(line: bytes) -> dict:
    _, log = log_record(line, 0)
    return {kv.key: value_of(kv.value) for kv in log.attributes}


# ---- a record as a log record


def test_a_call_is_a_log_record_in_the_gen_ai_conventions() -> None:
    line = line_of(LLM_CALL)
    instance, log = log_record(line, 42)
    assert instance == "host/w1"
    assert log.body.string_value == line.decode()
    assert log.time_unix_nano == 1795336200123000000
    assert log.observed_time_unix_nano == 42
    attributes = {kv.key: value_of(kv.value) for kv in log.attributes}
    assert attributes["event.name"] == "llm_call"
    assert attributes["tollgate.record_id"] == hashlib.sha256(line).hexdigest()
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.request.max_tokens"] == 256
    assert attributes["gen_ai.usage.input_tokens"] == 11
    assert attributes["gen_ai.usage.output_tokens"] == 7
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["http.response.status_code"] == 200
    assert attributes["http.request.method"] == "POST"
    assert attributes["server.address"] == "api.openai.com"
    assert attributes["url.path"] == "/v1/chat/completions"
    # The fields calls are filtered by under Tollgate's names, their types kept; nulls left out.
    assert attributes["tollgate.client"] == "alice"
    assert attributes["tollgate.decision"] == "allow"
    assert attributes["tollgate.cost_usd"] == 0.000123
    assert "tollgate.error" not in attributes
    # The others are in the body only.
    for name in ("tollgate.groups", "tollgate.stream", "tollgate.latency_ms", "tollgate.findings"):
        assert name not in attributes
    assert "gen_ai.usage.cache_read.input_tokens" not in attributes
    # In places of their own: not attributes again.
    for name in ("tollgate.event", "tollgate.instance", "tollgate.ts", "tollgate.provider", "tollgate.model"):
        assert name not in attributes


def test_record_id_is_the_chain_when_the_record_has_one() -> None:
    chain = "ab" * 32
    line = line_of({**LLM_CALL, "seq": 3, "chain": chain})
    attributes = attributes_of(line)
    assert attributes["tollgate.record_id"] == chain
    assert "tollgate.seq" not in attributes and "tollgate.chain" not in attributes
    assert record_id(line, orjson.loads(line)) == chain
    # Without a chain: the line's own hash, the same for every copy of it.
    plain = line_of(LLM_CALL)
    assert record_id(plain, orjson.loads(plain)) == record_id(bytes(plain), None) == hashlib.sha256(plain).hexdigest()


def test_an_mcp_call_and_the_process_records() -> None:
    mcp = attributes_of(
        line_of(
            {
                "event": "mcp_call",
                "instance": "h",
                "ts": "2026-11-22T08:30:00.000Z",
                "method": "tools/call",
                "tool": "search",
                "server": "docs",
                "status": 200,
            }
        )
    )
    assert mcp["mcp.method.name"] == "tools/call"
    assert mcp["gen_ai.tool.name"] == "search"
    assert mcp["tollgate.server"] == "docs"
    assert "http.request.method" not in mcp
    started = attributes_of(
        line_of(
            {
                "event": "tollgate_started",
                "instance": "h",
                "ts": "2026-11-22T08:30:00.000Z",
                "pid": 7,
                "listen": ["127.0.0.1:8080"],
            }
        )
    )
    assert set(started) == {"event.name", "tollgate.record_id"}  # the rest is in its body


def test_a_line_that_is_not_a_record_is_still_sent() -> None:
    line = b'{"event":"llm_call","ts":"2026-11-2'
    instance, log = log_record(line, 0)
    assert instance is None
    assert log.body.string_value == line.decode()
    assert log.time_unix_nano == 0
    assert {kv.key: value_of(kv.value) for kv in log.attributes} == {
        "tollgate.record_id": hashlib.sha256(line).hexdigest()
    }


def test_a_request_keeps_the_order_and_names_each_records_instance() -> None:
    lines = [line_of({**LLM_CALL, "instance": name, "request_id": str(i)}) for i, name in enumerate("aabab")]
    request = request_of(lines)
    assert bodies(request) == [line.decode() for line in lines]
    instances = [
        {kv.key: value_of(kv.value) for kv in r.resource.attributes}["service.instance.id"]
        for r in request.resource_logs
    ]
    assert instances == ["a", "b", "a", "b"]
    resource = {kv.key: value_of(kv.value) for kv in request.resource_logs[0].resource.attributes}
    assert resource["service.name"] == "tollgate"


def set_with_classes(target: AnyValue, value) -> None:
    """What opentelemetry-proto's classes make of a JSON value, set field by field."""
    if isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if -(1 << 63) <= value < 1 << 63:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, list):
        target.array_value.SetInParent()
        for item in value:
            set_with_classes(target.array_value.values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for k, v in value.items():
            pair = target.kvlist_value.values.add()
            pair.key = k
            set_with_classes(pair.value, v)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
@pytest.mark.slow
def test_values_are_written_as_opentelemetry_proto_writes_them(value) -> None:
    expected = AnyValue()
    set_with_classes(expected, value)
    assert AnyValue.FromString(encode_value(value)) == expected


def test_the_log_record_has_its_event_name_and_severity() -> None:
    _, log = log_record(line_of(LLM_CALL), 7)
    assert log.event_name == "llm_call"
    assert (log.severity_number, log.severity_text) == (9, "INFO")


# ---- configuration


def test_audit_otlp_configuration() -> None:
    config = parse_config({"audit": {"otlp": {"endpoint": "https://collector:4318/", "headers": {"x-key": "k"}}}}, {})
    assert config.audit.otlp is not None
    assert config.audit.otlp.endpoint == "https://collector:4318"
    assert config.audit.otlp.headers == {"x-key": "k"}
    assert "x-key" not in repr(config.audit.otlp)
    assert parse_config({}, {}).audit.otlp is None


@pytest.mark.parametrize(
    ("audit", "expected"),
    [
        ({"path": "-", "otlp": {"endpoint": "http://c:4318"}}, "audit.otlp: the audit is exported from its file"),
        ({"otlp": {"endpoint": "ftp://c"}}, "audit.otlp.endpoint: must be an http(s) URL"),
        ({"otlp": {"endpoint": "c:4318"}}, "audit.otlp.endpoint: must be an http(s) URL"),
        ({"otlp": {"endpoint": "http://c:4318?x=1"}}, "audit.otlp.endpoint: must be an http(s) URL without a query"),
        ({"otlp": {"headers": {}}}, "audit.otlp.endpoint"),
        ({"otlp": {"endpoint": "http://c", "headers": ["a"]}}, "audit.otlp.headers"),
    ],
)
def test_audit_otlp_errors_name_the_field(audit: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"audit": audit}, {})
    assert expected in str(info.value)


# ---- the position


def test_position_file_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl.otlp-position")
    assert read_position(path) is None
    write_position(path, Position(1, 2, 300))
    assert read_position(path) == Position(1, 2, 300)
    write_position(path, Position(1, 2, 400))
    assert read_position(path) == Position(1, 2, 400)
    assert sorted(os.listdir(tmp_path)) == ["audit.jsonl.otlp-position"]  # no temporary file left
    Path(path).write_text("{not json")
    assert read_position(path) is None
    assert position_path("/x/audit.jsonl") == "/x/audit.jsonl.otlp-position"


def test_where_a_start_resumes(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"a\nb\n")
    st = audit.stat()
    here = Position(st.st_dev, st.st_ino, 0)
    assert start_position(str(audit), None) == (None, here)
    assert start_position(str(audit), Position(st.st_dev, st.st_ino, 2)) == (None, Position(st.st_dev, st.st_ino, 2))
    assert start_position(str(audit), Position(st.st_dev, st.st_ino, 4)) == (None, Position(st.st_dev, st.st_ino, 4))
    # Past its end (cut shorter), or of a file that is gone: from the start.
    assert start_position(str(audit), Position(st.st_dev, st.st_ino, 5)) == (None, here)
    assert start_position(str(audit), Position(st.st_dev, st.st_ino + 999_999, 2)) == (None, here)
    # Rotated (logrotate's create) while stopped: the rest of the old file first.
    audit.rename(tmp_path / "audit.jsonl.1")
    audit.write_bytes(b"c\n")
    rotated, start = start_position(str(audit), Position(st.st_dev, st.st_ino, 2))
    assert rotated == str(tmp_path / "audit.jsonl.1")
    assert start == Position(st.st_dev, st.st_ino, 2)
    tail = Tail(str(audit), start, rotated)
    assert [line.data for line in tail.read(10)] == [b"b", b"c"]


# ---- reading the file


def test_tail_reads_whole_lines_only(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"one\ntw")
    st = audit.stat()
    tail = Tail(str(audit), Position(st.st_dev, st.st_ino, 0))
    lines = tail.read(10)
    assert [line.data for line in lines] == [b"one"]
    assert lines[0].after.offset == 4
    assert tail.read(10) == []
    assert tail.ahead() == 0
    with audit.open("ab") as f:
        f.write(b"o\nthree\n\nfour\n")
    assert tail.ahead() == 4  # newlines: empty lines count until read
    lines = tail.read(2)
    assert [line.data for line in lines] == [b"two", b"three"]
    assert tail.ahead() == 2
    lines = tail.read(10)
    assert [line.data for line in lines] == [b"four"]
    assert lines[-1].after.offset == audit.stat().st_size
    assert tail.ahead() == 0


def test_tail_follows_rotation_and_truncation(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"1\n2\n")
    st = audit.stat()
    tail = Tail(str(audit), Position(st.st_dev, st.st_ino, 0))
    assert [line.data for line in tail.read(1)] == [b"1"]
    # logrotate's create: renamed, a new file made; the writer's last line went to the old one.
    audit.rename(tmp_path / "audit.jsonl.1")
    with (tmp_path / "audit.jsonl.1").open("ab") as f:
        f.write(b"3\n")
    assert [line.data for line in tail.read(10)] == [b"2", b"3"]  # no new file yet
    audit.write_bytes(b"4\n")
    lines = tail.read(10)
    assert [line.data for line in lines] == [b"4"]
    new = audit.stat()
    assert lines[0].after == Position(new.st_dev, new.st_ino, 2)
    # copytruncate: the same file, shorter than what was read: from its start.
    audit.write_bytes(b"")
    assert tail.read(10) == []
    audit.write_bytes(b"5\n")
    assert [line.data for line in tail.read(10)] == [b"5"]
    # Cut again and grown past where reading stood before the next read: its first bytes tell.
    audit.write_bytes(b"6\n7\n")
    assert [line.data for line in tail.read(10)] == [b"6", b"7"]


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=60),
    writes=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=30),
    batches=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=30),
)
@pytest.mark.slow
def test_exported_bodies_are_the_files_lines_whatever_the_boundaries(
    tmp_path_factory: pytest.TempPathFactory, records: list[str], writes: list[int], batches: list[int]
) -> None:
    """Lines appended in pieces of any size, read in batches of any size, each batch a request: the
    bodies received, in order, are the file's lines, each once; the position after each batch
    resumes exactly where the next begins."""
    lines = [orjson.dumps({"event": "llm_call", "n": i, "text": text}) for i, text in enumerate(records)]
    data = b"".join(line + b"\n" for line in lines)
    audit = tmp_path_factory.mktemp("tail") / "audit.jsonl"
    audit.write_bytes(b"")
    st_ = audit.stat()
    position = Position(st_.st_dev, st_.st_ino, 0)
    received: list[str] = []
    written, i = 0, 0
    while len(received) < len(lines):
        if written < len(data):
            step = writes[i % len(writes)]
            with audit.open("ab") as f:
                f.write(data[written : written + step])
            written += step
        # A new reader from the last acknowledged position, as after a restart, every other batch.
        tail = Tail(str(audit), position)
        batch = tail.read(batches[i % len(batches)])
        i += 1
        if batch:
            received += bodies(request_of([line.data for line in batch]))
            position = batch[-1].after
        tail.close()
    assert received == [line.decode() for line in lines]
    assert position.offset == len(data)


# ---- retrying


def test_backoff_doubles_to_its_cap() -> None:
    assert [backoff(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff(0) == 0
    assert backoff(10_000) == 30


@pytest.mark.parametrize(
    ("status", "sent", "retry"),
    [(200, True, False), (204, True, False), (429, False, True), (500, False, True), (503, False, True),
     (400, False, False), (401, False, False), (413, False, False), (302, False, True)],
)  # fmt: skip
def test_what_an_answer_means(status: int, sent: bool, retry: bool) -> None:
    outcome = outcome_of(status, "Reason", b"said why", None)
    assert (outcome.sent, outcome.retry) == (sent, retry)
    if not sent:
        assert str(status) in outcome.why and "said why" in outcome.why
    assert outcome_of(429, "", b"", "7").wait == 7


# ---- the exporter's thread, against the stand-in collector

FAST = {"timeout": 0.5, "batch_seconds": 0.05, "first_delay": 0.05, "max_delay": 0.2}


def write_records(path: Path, first: int, count: int) -> list[str]:
    return audit_lines.append_records(path, ({**LLM_CALL, "request_id": f"r-{n}"} for n in range(first, first + count)))


wait_until = partial(audit_lines.wait_until, timeout=10.0)


@pytest.fixture
def collector():
    collector = Collector.start(listening=False)
    yield collector
    collector.close()


@pytest.mark.slow
def test_down_then_503_then_slow_then_taken_none_lost(tmp_path: Path, collector: Collector) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    export = AuditExport(str(audit), collector.url, {"x-collector-key": "k"}, **FAST).start()  # type: ignore[arg-type]
    try:
        lines = write_records(audit, 0, 30)
        wait_until(lambda: export.lag() == 30)  # down: nothing taken, the lag says so
        collector.log_status = 503
        collector.up()
        wait_until(lambda: collector.refused_logs > 0)
        lines += write_records(audit, 30, 700)
        collector.delay = 1.0  # slower than the exporter waits: timed out, sent again
        collector.log_status = 200
        wait_until(lambda: len(collector.requests) >= 3)
        collector.delay = 0
        received = collector.wait_logs(len(lines))
        wait_until(lambda: export.lag() == 0)
    finally:
        assert export.stop()
    bodies_received = [log["body"] for log in received]
    assert set(bodies_received) == set(lines)  # none lost
    # A copy (a batch the slow collector took after the exporter gave up on it) has the same id.
    ids: dict[str, str] = {}
    for log in received:
        assert (
            ids.setdefault(log["body"], log["attributes"]["tollgate.record_id"])
            == log["attributes"]["tollgate.record_id"]
        )
    assert len(set(ids.values())) == len(lines)
    assert all(r.headers["x-collector-key"] == "k" for r in collector.requests if r.path == "/v1/logs")
    st = audit.stat()
    assert read_position(str(audit) + ".otlp-position") == Position(st.st_dev, st.st_ino, st.st_size)


@pytest.mark.slow
def test_a_restart_resumes_at_its_position(tmp_path: Path, collector: Collector) -> None:
    collector.up()
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    first = write_records(audit, 0, 5)
    with_export = AuditExport(str(audit), collector.url, **FAST).start()  # type: ignore[arg-type]
    collector.wait_logs(5)
    wait_until(lambda: with_export.lag() == 0)
    assert with_export.stop()
    second = write_records(audit, 5, 4)
    again = AuditExport(str(audit), collector.url, **FAST).start()  # type: ignore[arg-type]
    try:
        collector.wait_logs(9)
        time.sleep(0.2)
    finally:
        again.stop()
    assert [log["body"] for log in collector.logs] == first + second  # each once


@pytest.mark.slow
def test_a_refused_batch_is_dropped_and_logged_once(
    tmp_path: Path, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    collector.log_status = 400
    collector.up()
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    write_records(audit, 0, 3)
    export = AuditExport(str(audit), collector.url, **FAST).start()  # type: ignore[arg-type]
    try:
        wait_until(lambda: export.dropped == 3)
        collector.log_status = 200
        later = write_records(audit, 3, 2)
        received = collector.wait_logs(2)
    finally:
        export.stop()
    assert [log["body"] for log in received] == later
    refused = [r for r in caplog.records if "not exported" in r.getMessage()]
    assert len(refused) == 1 and "400" in refused[0].getMessage()


@pytest.mark.slow
def test_one_exporter_per_file(tmp_path: Path, collector: Collector) -> None:
    """Two exporters of one file (two processes' in a fleet): one ships it, the other stands by and
    takes over when the first stops."""
    collector.up()
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    lines = write_records(audit, 0, 20)
    one = AuditExport(str(audit), collector.url, **FAST).start()  # type: ignore[arg-type]
    wait_until(lambda: one.lag() is not None)
    other = AuditExport(str(audit), collector.url, **FAST).start()  # type: ignore[arg-type]
    try:
        collector.wait_logs(20)
        lines += write_records(audit, 20, 5)
        collector.wait_logs(25)
        assert other.lag() is None  # standing by
        assert one.stop()
        lines += write_records(audit, 25, 5)
        collector.wait_logs(30, timeout=15)
        assert other.lag() is not None
    finally:
        other.stop()
    assert [log["body"] for log in collector.logs] == lines


@pytest.mark.slow
def test_stop_is_bounded_while_the_collector_is_down(tmp_path: Path, collector: Collector) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    write_records(audit, 0, 3)
    export = AuditExport(str(audit), collector.url, **FAST).start()  # type: ignore[arg-type]
    wait_until(lambda: export.lag() == 3)
    began = time.monotonic()
    assert export.stop(timeout=0.5)
    assert time.monotonic() - began < 3
    assert read_position(str(audit) + ".otlp-position") is None  # nothing acknowledged: all sent next time


@pytest.mark.slow
def test_the_lag_counts_what_is_written_and_not_yet_acknowledged(tmp_path: Path, collector: Collector) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("")
    export = AuditExport(str(audit), collector.url, batch_records=10, **FAST).start()  # type: ignore[arg-type]
    try:
        write_records(audit, 0, 35)
        wait_until(lambda: export.lag() == 35)
        collector.up()
        collector.wait_logs(35)
        wait_until(lambda: export.lag() == 0)
    finally:
        export.stop()
    assert len([r for r in collector.requests if r.path == "/v1/logs"]) >= 4  # batches of 10 at most
