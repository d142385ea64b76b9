"""`tollgate scan --answer FILE`: a saved answer read as the proxy reads the answers its clients get,
by every format of the answer formats' registry (named with `--format`, or told from the answer's
first message): the kinds found and their counts (never a value), and what the client would get.
One test runs it as a process (`python -m tollgate`); the others call its `main` in this one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support.cli import run_tollgate

from support.guardrail_samples import EMAIL, SAMPLES
from tollgate.cli.main import main
from tollgate.governance.guardrails.answer_formats import ANSWER_FORMATS

ROOT = Path(__file__).resolve().parents[3]
CARD = SAMPLES["pii.payment_card"][0]
CONFIG = (
    "guardrails:\n"
    '  - {"on": [answer], detect: [pii.email], action: redact}\n'
    '  - {"on": [answer], detect: [pii.payment_card], action: deny}\n'
    "  - {detect: [secrets], action: deny}\n"  # on requests only: not applied to answers
)


def chunk(content: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    event = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [choice]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def chat_stream(text: str) -> bytes:
    pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
    return b"".join(chunk(p) for p in pieces) + chunk("", "stop") + b"data: [DONE]\n\n"


def tool_result(text: str) -> dict:
    return {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": text}], "isError": False}}


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "tollgate.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)

    def run(name: str, saved: bytes, *args: str) -> tuple[int, str, str]:
        (tmp_path / name).write_bytes(saved)
        capsys.readouterr()
        status = main(["scan", "--answer", name, *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_a_streamed_answer_comes_redacted(here) -> None:
    saved = chat_stream(f"Write to {EMAIL} today.")
    status, out, err = here("answer.sse", saved)
    assert status == 1
    assert err == "applied: tollgate.yaml: 2 guardrails rules on answer (pii.email, pii.payment_card), no key of" \
        " Tollgate's own\n"  # fmt: skip
    head, row, said, *rest = out.splitlines()
    assert head == f"answer.sse: openai-chat, streamed ({len(saved)} bytes): 1 finding"
    assert row.split() == ["pii.email", "1", "redact"]
    assert said == "redacted; the client gets:"
    text = "".join(
        choice["delta"].get("content") or ""
        for line in rest
        if line.startswith("data: {")
        for choice in json.loads(line[6:])["choices"]
    )
    assert text == "Write to [REDACTED:pii.email] today."
    assert EMAIL not in out + err


def test_a_denied_stream_is_cut_before_the_value(here) -> None:
    status, out, _ = here("answer.sse", chat_stream(f"Your card is {CARD}, keep it."))
    assert status == 1
    lines = [line for line in out.splitlines() if line]
    assert lines[2] == "denied (pii.payment_card): cut before the value, then the format's error; the client gets:"
    assert json.loads(lines[-1][6:])["error"]["code"] == "content_denied"
    assert "4111" not in out and "[DONE]" not in out


def test_a_json_answer_denied_is_refused(here) -> None:
    message = {"role": "assistant", "content": f"card {CARD}"}
    answer = {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}
    status, out, _ = here("answer.json", json.dumps(answer).encode())
    assert status == 1
    assert out.splitlines()[1:] == [
        "  pii.payment_card     1  deny",
        "denied (pii.payment_card): refused 403 content_denied; the client gets none of it",
    ]


def test_a_clean_answer_comes_as_it_came(here) -> None:
    saved = chat_stream("Nothing to hide here.")
    assert here("answer.sse", saved)[:2] == (
        0,
        f"answer.sse: openai-chat, streamed ({len(saved)} bytes): nothing found\n"
        "the client gets it as it came, byte for byte\n",
    )


@pytest.mark.parametrize("as_sse", [True, False], ids=["sse", "json"])
def test_an_mcp_answer_is_told_and_its_result_replaced_by_an_error(here, as_sse: bool) -> None:
    message = json.dumps(tool_result(f"on file: {CARD}")).encode()
    saved = b"event: message\ndata: " + message + b"\n\n" if as_sse else message
    status, out, _ = here("answer.txt", saved)
    assert status == 1
    lines = [line for line in out.splitlines() if line]
    assert lines[0].startswith(f"answer.txt: mcp, {'streamed' if as_sse else 'JSON'}")
    assert lines[2] == "denied (pii.payment_card): its message is replaced by an error; the client gets:"
    sent = json.loads(lines[-1].removeprefix("data: "))
    assert sent == {"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32001, "message": "Tollgate refused this answer: it holds pii.payment_card."}}  # fmt: skip


def test_a_format_named_or_not_told(here) -> None:
    names = ", ".join(sorted(ANSWER_FORMATS))
    status, out, err = here("answer.txt", b'data: {"what": 1}\n\n')
    assert (status, out) == (2, "")
    assert (
        err == f"error: answer.txt: the answer looks like no format Tollgate reads: name one with --format ({names})\n"
    )
    status, _, err = here("answer.txt", b"{}", "--format", "nope")
    assert (status, err) == (2, f"error: --format nope: not a format Tollgate reads ({names})\n")
    # Named, it is read as that format: an MCP answer read as a chat answer has no choice, and
    # every string of it is read whole all the same.
    status, out, _ = here("answer.json", json.dumps(tool_result(EMAIL)).encode(), "--format", "openai-chat")
    assert (status, out.splitlines()[0]) == (1, f"answer.json: openai-chat, JSON ({len(json.dumps(tool_result(EMAIL)))}"
                                                " bytes): 1 finding")  # fmt: skip


def test_a_body_and_an_answer_are_not_both_given(here) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["scan", "body.json", "--answer", "answer.sse"])
    assert raised.value.code == 2


@pytest.mark.slow
def test_the_command(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(CONFIG)
    (tmp_path / "answer.sse").write_bytes(chat_stream(f"Write to {EMAIL} today."))
    done = run_tollgate(
        "scan", "--answer", "answer.sse", "--format", "openai-chat", "--config", "rules.yaml", cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[1].split() == ["pii.email", "1", "redact"]
    assert "[REDACTED:pii.email]" in done.stdout and EMAIL not in done.stdout + done.stderr


def test_the_documented_examples_hold_what_the_example_configuration_finds(capsys) -> None:
    """The README's `tollgate scan` lines: the example request and answer each hold an address the
    example configuration's rules redact (on a domain `pii.email` reads, not one kept for examples)."""
    examples = ROOT / "docs" / "examples"
    config = str(examples / "tollgate.yaml")
    assert main(["scan", "--config", config, str(examples / "request.json")]) == 1
    assert capsys.readouterr().out.splitlines()[1:] == ["  pii.email     1  redact  at 100"]
    assert main(["scan", "--config", config, "--answer", str(examples / "answer.sse")]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1:3] == ["  pii.email     1  redact", "redacted; the client gets:"]
    assert '"content":"send your questions to [REDACTED:pii.email]."' in out and "dana@" not in out
