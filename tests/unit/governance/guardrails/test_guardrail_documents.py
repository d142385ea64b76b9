"""Documents in a request body: where each format keeps them (`formats/*/attachments.py`), which the
guardrails read and which are unread (`guardrails/documents.py`), finding and redacting inside a
document's base64 with the rest of the body byte for byte, and a JSON string's span by its path."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support import guardrail_samples as samples

from tollgate.formats.anthropic_messages.attachments import attachments as anthropic
from tollgate.formats.anthropic_messages.attachments import runs as anthropic_runs
from tollgate.formats.bedrock_converse.attachments import attachments as converse
from tollgate.formats.bedrock_converse.attachments import runs as converse_runs
from tollgate.formats.bedrock_invoke.attachments import attachments as invoke
from tollgate.formats.bodies.attachments import Attachments, Inline
from tollgate.formats.bodies.json_codec import read_request_json
from tollgate.formats.bodies.json_paths import string_spans
from tollgate.formats.gemini_generate.attachments import attachments as gemini
from tollgate.formats.gemini_generate.attachments import runs as gemini_runs
from tollgate.formats.openai_api.attachments import attachments as openai
from tollgate.formats.openai_api.attachments import runs as openai_runs
from tollgate.governance.guardrails import documents
from tollgate.governance.guardrails.guardrails_settings import GuardrailRule
from tollgate.governance.guardrails.rules import Guardrails

GITHUB = samples.SAMPLES["secrets.github_token"][0]
DOTENV = f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\nAWS_SECRET_ACCESS_KEY={samples.AWS_SECRET}\nGITHUB_TOKEN={GITHUB}\n"
B64 = base64.b64encode(DOTENV.encode()).decode()


def found(reader: Any, data: dict[str, Any]) -> Attachments:
    body = json.dumps(data).encode()
    return reader(read_request_json(body))


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, *parts]}]}


# ---- where each format keeps documents


def test_openai_chat_file_parts_images_and_audio():
    data = user(
        {"type": "file", "file": {"file_data": "data:text/plain;base64," + B64, "filename": "a.env"}},
        {"type": "file", "file": {"file_id": "file-1"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    )
    got = found(openai, data)
    assert got.inline == [
        Inline(
            ("messages", 0, "content", 1, "file", "file_data"),
            data["messages"][0]["content"][1]["file"]["file_data"],
            None,
            "a.env",
        )
    ]
    assert got.unread == ["file_reference", "image", "audio"]


def test_openai_responses_input_files_in_a_tool_output_and_a_batch():
    data = {
        "input": [
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [{"type": "input_file", "file_data": B64, "filename": "x.py"}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_file", "file_url": "https://x.test/f.txt"},
                    {"type": "input_image", "file_id": "f"},
                ],
            },
        ]
    }
    got = found(openai, data)
    assert [(i.path, i.filename) for i in got.inline] == [(("input", 0, "output", 0, "file_data"), "x.py")]
    assert got.unread == ["file_reference", "image"]
    batch = found(openai, {"input_file_id": "file-b", "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert batch.unread == ["batch_file"]


@pytest.mark.parametrize(
    ("body", "may_attach"),
    [
        (b'{"messages": [{"role": "user", "content": "a picture of a file, an image"}]}', False),
        (b'{"messages": [{"role": "user", "content": "caf\\u00e9"}]}', False),
        (b'{"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}', True),
        # An escape that spells a marker is read as what it spells.
        (b'{"messages": [{"role": "user", "content": [{"type": "\\u0066ile", "file": {"file_id": "f"}}]}]}', True),
        (b'{"contents": [{"parts": [{"inlin\\u0065Data": {"data": "AA"}}]}]}', True),
    ],
)
@pytest.mark.parametrize("with_rules", [True, False])
@pytest.mark.parametrize("use_hyperscan", [True, False])
def test_the_one_pass_says_whether_a_body_is_worth_walking(body, may_attach, with_rules, use_hyperscan):
    rules = [GuardrailRule(detect=["secrets"], action="audit")] if with_rules else []
    guardrails = Guardrails(rules, own_keys=["tg-own-key-000000001"], use_hyperscan=use_hyperscan)
    assert guardrails.scan(body, "openai", "gpt-4o", None, ()).may_attach is may_attach


def test_an_escaped_key_is_walked_as_what_it_spells():
    body = b'{"messages": [{"role": "user", "content": [{"type": "\\u0066ile", "file": {"file_id": "f"}}]}]}'
    assert openai(read_request_json(body)).unread == ["file_reference"]


def test_anthropic_document_sources():
    data = user(
        {"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": B64}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": DOTENV}},
        {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}},
        {"type": "document", "source": {"type": "file", "file_id": "file_1"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
    )
    got = found(anthropic, data)
    # A text source is the body's own text, read with it.
    assert [(i.path, i.media_type) for i in got.inline] == [
        (("messages", 0, "content", 1, "source", "data"), "text/plain")
    ]
    assert got.unread == ["file_reference", "image"]


def test_anthropic_documents_in_a_tool_result_and_a_batch():
    document = {"type": "document", "source": {"type": "base64", "media_type": "text/csv", "data": B64}}
    batch = {
        "requests": [
            {
                "custom_id": "a",
                "params": {
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "tool_result", "tool_use_id": "t", "content": [document]}],
                        }
                    ]
                },
            }
        ]
    }
    got = found(anthropic, batch)
    assert [i.path for i in got.inline] == [
        ("requests", 0, "params", "messages", 0, "content", 0, "content", 0, "source", "data")
    ]


@pytest.mark.parametrize(("inline", "file"), [("inlineData", "fileData"), ("inline_data", "file_data")])
def test_gemini_parts_in_either_spelling(inline, file):
    media = "mimeType" if inline == "inlineData" else "mime_type"
    uri = "fileUri" if file == "fileData" else "file_uri"
    data = {
        "contents": [
            {
                "parts": [
                    {inline: {media: "text/plain", "data": B64}},
                    {file: {uri: "https://x.test/f", media: "text/plain"}},
                ]
            }
        ]
    }
    got = found(gemini, data)
    assert [(i.path, i.media_type) for i in got.inline] == [(("contents", 0, "parts", 0, inline, "data"), "text/plain")]
    assert got.unread == ["file_reference"]


def test_converse_documents_images_and_s3():
    data = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"document": {"format": "txt", "name": "env", "source": {"bytes": B64}}},
                    {"document": {"format": "pdf", "name": "s", "source": {"s3Location": {"uri": "s3://b/k"}}}},
                    {"image": {"format": "png", "source": {"bytes": "AAAA"}}},
                    {"video": {"format": "mp4", "source": {"bytes": "AAAA"}}},
                    {"text": "read"},
                ],
            }
        ],
        "toolConfig": {
            "tools": [
                {"toolSpec": {"name": "t", "inputSchema": {"json": {"properties": {"image": {"type": "string"}}}}}}
            ]
        },
    }
    got = found(converse, data)
    assert [(i.path, i.media_type, i.filename) for i in got.inline] == [
        (("messages", 0, "content", 0, "document", "source", "bytes"), "text/plain", "env")
    ]
    assert got.unread == ["file_reference", "image", "video"]  # a schema's property named image is none


def test_invoke_reads_claudes_and_novas_bodies():
    claude = found(
        invoke, user({"type": "document", "source": {"type": "base64", "media_type": "text/plain", "data": B64}})
    )
    nova = found(
        invoke,
        {
            "messages": [
                {"role": "user", "content": [{"document": {"format": "md", "name": "n", "source": {"bytes": B64}}}]}
            ]
        },
    )
    assert len(claude.inline) == len(nova.inline) == 1


# ---- which documents are read

# A PNG's first bytes, a PDF's binary comment line, and text with a NUL past what is decoded first.
BINARY = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + DOTENV.encode()).decode()
PDF = base64.b64encode(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + DOTENV.encode()).decode()
NUL_PAST_HEAD = base64.b64encode(DOTENV.encode() * 200 + b"\x00").decode()


@pytest.mark.parametrize(
    ("value", "media_type", "filename", "read"),
    [
        ("data:text/plain;base64," + B64, None, None, True),
        ("data:application/json;base64," + B64, None, None, True),
        ("data:application/vnd.api+json;base64," + B64, None, None, True),
        (B64, "text/csv", None, True),
        (B64, "application/x-yaml", None, True),
        (B64, None, "main.py", True),
        (B64, None, ".env", True),
        (B64, "application/octet-stream", "config.toml", True),
        # Whatever its type says, a document whose bytes are text is read as text.
        (B64, "application/octet-stream", None, True),
        ("data:application/pdf;base64," + B64, None, "a.txt", True),
        (B64, None, "statement.pdf", True),
        (B64, None, None, True),
        (B64, "image/png", None, True),
        # Bytes that are not text: named by their declared type.
        (BINARY, "application/octet-stream", None, "document"),
        ("data:application/pdf;base64," + PDF, None, "a.txt", "document"),  # the media type decides
        (PDF, None, "statement.pdf", "document"),
        (BINARY, None, None, "document"),
        (BINARY, "image/png", None, "image"),
        (BINARY, "audio/wav", None, "audio"),
        (BINARY, "video/mp4", None, "video"),
        (NUL_PAST_HEAD, "application/octet-stream", None, "document"),  # its first bytes only look like text
        ("data:text/plain," + DOTENV, None, None, "document"),  # not base64
        ("not base64!", "text/plain", None, "document"),
        ("not base64!", "image/png", None, "image"),
        (base64.b64encode(b"\xff\xfe" + DOTENV.encode("utf-16-le")).decode(), "text/plain", None, "document"),
        (
            base64.b64encode(b"\xff\xfe" + DOTENV.encode("utf-16-le")).decode(),
            "application/octet-stream",
            None,
            "document",
        ),
    ],
)
def test_which_documents_are_read(value, media_type, filename, read):
    docs, unread = documents.read(Attachments([Inline(("d",), value, media_type, filename)]))
    if read is True:
        assert (len(docs), unread) == (1, [])
        assert docs[0].text == DOTENV.encode()
    else:
        assert (docs, unread) == ([], [read])


def test_a_byte_order_mark_is_kept():
    value = base64.b64encode(b"\xef\xbb\xbf" + DOTENV.encode()).decode()
    (doc,), _ = documents.read(Attachments([Inline(("d",), value, "text/plain")]))
    assert doc.text == DOTENV.encode()
    assert base64.b64decode(doc.encoded(b"x")) == b"\xef\xbb\xbfx"


# ---- found and redacted inside a document


def redacting() -> Guardrails:
    return Guardrails([GuardrailRule(detect=["secrets"], action="redact")])


def scan_body(data: dict[str, Any], guardrails: Guardrails) -> tuple[bytes, Any]:
    body = json.dumps(data).encode()
    assert guardrails.scan(body, "openai", "gpt-4o", None, ()).may_attach
    docs, _ = documents.read(openai(read_request_json(body)))
    return body, guardrails.scan(body, "openai", "gpt-4o", None, (), documents=docs)


def test_findings_in_a_document_count_and_are_redacted_in_its_base64():
    prefix = "data:text/plain;base64,"
    data = user({"type": "file", "file": {"file_data": prefix + B64, "filename": "a.env"}})
    data["messages"][0]["content"][0]["text"] = "and " + GITHUB  # one in the body's own text too
    body, scan = scan_body(data, redacting())
    assert scan.counts() == {
        "secrets.aws_access_key_id": 1,
        "secrets.aws_secret_access_key": 1,
        "secrets.github_token": 2,
    }
    out, replaced = scan.redact(body)
    assert replaced == 4
    sent = json.loads(out)
    assert sent["messages"][0]["content"][0]["text"] == "and [REDACTED:secrets.github_token]"
    value = sent["messages"][0]["content"][1]["file"]["file_data"]
    assert value.startswith(prefix)
    assert base64.b64decode(value[len(prefix) :]).decode() == (
        "AWS_ACCESS_KEY_ID=[REDACTED:secrets.aws_access_key_id]\n"
        "AWS_SECRET_ACCESS_KEY=[REDACTED:secrets.aws_secret_access_key]\nGITHUB_TOKEN=[REDACTED:secrets.github_token]\n"
    )
    # The rest of the body byte for byte: only the two strings changed.
    assert out.startswith(body[: body.index(b"and ")])
    assert out.endswith(b'", "filename": "a.env"}}]}]}')


def test_a_document_with_escaped_slashes_is_found_where_it_is():
    value = "data:text/plain;base64," + B64
    body = json.dumps(user({"type": "file", "file": {"file_data": value}})).encode().replace(b"/", b"\\/")
    docs, _ = documents.read(openai(read_request_json(body)))
    scan = redacting().scan(body, "openai", "gpt-4o", None, (), documents=docs)
    out, replaced = scan.redact(body)
    assert replaced == 3
    assert b"[REDACTED:" in base64.b64decode(
        json.loads(out)["messages"][0]["content"][1]["file"]["file_data"].split(",")[1]
    )


def test_a_document_denied_is_named_with_its_kinds():
    guardrails = Guardrails([GuardrailRule(detect=["secrets.github_token"], action="deny")])
    _, scan = scan_body(user({"type": "file", "file": {"file_data": B64, "filename": "a.txt"}}), guardrails)
    assert scan.denied and scan.denied_counts() == {"secrets.github_token": 1}


# ---- a JSON string's span by its path


TEXT = st.characters(blacklist_categories=("Cs",))


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(TEXT, max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT, max_size=6), inner, max_size=4),
        max_leaves=20,
    ),
    st.booleans(),
    st.booleans(),
)
@pytest.mark.slow
def test_every_string_is_found_at_its_path(value, ensure_ascii, spaced):
    data = {"v": value}
    body = json.dumps(data, ensure_ascii=ensure_ascii, separators=(", ", ": ") if spaced else (",", ":")).encode()
    paths: list[tuple] = []

    def strings(node: Any, path: tuple) -> None:
        if isinstance(node, str):
            paths.append(path)
        elif isinstance(node, dict):
            for k, v in node.items():
                strings(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                strings(v, (*path, i))

    strings(data, ())
    spans = string_spans(body, paths)
    assert set(spans) == set(paths)
    for path, (s, e) in spans.items():
        node: Any = data
        for key in path:
            node = node[key]
        assert json.loads(body[s:e]) == node


# ---- adjacent text parts read joined

PEM = samples.pem()
# A secret in its text, and a value of it that must not reach the upstream.
SPLIT = {
    "secrets.aws_access_key_id": (f"AWS_ACCESS_KEY_ID={samples.AWS_KEY_ID}\n", samples.AWS_KEY_ID),
    "secrets.github_token": (f"token {GITHUB} here", GITHUB),
    "secrets.private_key": (PEM, PEM.splitlines()[1]),
}


def parts_body(texts: list[str], fmt: str = "anthropic") -> tuple[bytes, dict[str, Any]]:
    if fmt == "gemini":
        data: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": t} for t in texts]}]}
    else:
        data = {"messages": [{"role": "user", "content": [{"type": "text", "text": t} for t in texts]}]}
    return json.dumps(data).encode(), data


def scan_parts(texts: list[str], fmt: str = "anthropic", action: str = "redact") -> tuple[bytes, Any]:
    body, _ = parts_body(texts, fmt)
    reader = {"anthropic": anthropic_runs, "openai": openai_runs, "gemini": gemini_runs, "converse": converse_runs}[fmt]
    guardrails = Guardrails([GuardrailRule(detect=["secrets"], action=action)])
    return body, guardrails.scan(body, "anthropic", None, None, (), runs=reader(read_request_json(body)))


@pytest.mark.parametrize("fmt", ["anthropic", "openai", "gemini"])
def test_an_aws_key_id_split_across_two_parts_is_found_and_each_piece_redacted(fmt):
    first, second = f"my key is {samples.AWS_KEY_ID[:9]}", f"{samples.AWS_KEY_ID[9:]} and that is all"
    body, scan = scan_parts([first, second], fmt)
    assert scan.counts() == {"secrets.aws_access_key_id": 1}
    out, replaced = scan.redact(body)
    parts = json.loads(out)["contents"][0]["parts"] if fmt == "gemini" else json.loads(out)["messages"][0]["content"]
    assert [p["text"] for p in parts] == [
        "my key is [REDACTED:secrets.aws_access_key_id]",
        "[REDACTED:secrets.aws_access_key_id] and that is all",
    ]
    assert replaced == 2


def test_a_pem_key_split_across_parts_is_one_finding():
    lines = PEM.splitlines(keepends=True)
    body, scan = scan_parts(["here:\n" + "".join(lines[:1]), "".join(lines[1:])], action="deny")
    assert scan.denied_counts() == {"secrets.private_key": 1}
    # A key whose first part alone is a key (its body begun) is still one finding.
    body, scan = scan_parts(["".join(lines[:4]), "".join(lines[4:])])
    assert scan.counts() == {"secrets.private_key": 1}
    out, _ = scan.redact(body)
    assert all(line.strip() not in out.decode() for line in lines[1:-2])


def test_a_secret_in_one_part_is_counted_once():
    body, scan = scan_parts([f"GITHUB_TOKEN={GITHUB}", "and more text"])
    assert scan.counts() == {"secrets.github_token": 1}
    assert scan.redact(body)[1] == 1


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(SPLIT)),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=300),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=300),
    st.integers(min_value=1),
    st.sampled_from(["anthropic", "openai", "gemini"]),
)
@pytest.mark.slow
def test_a_secret_split_anywhere_between_two_parts_is_found_as_it_is_whole(kind, before, after, cut, fmt):
    secret, value = SPLIT[kind]
    # Padded by spaces: what is around it cannot make it another token.
    whole = f"{before} \n{secret}\n {after}"
    at = len(before) + 3 + cut % (len(secret) - 1)  # inside the secret, between two characters
    _, one = scan_parts([whole, "the end"], fmt)
    body, split = scan_parts([whole[:at], whole[at:]], fmt)
    assert split.counts() == one.counts() and kind in split.counts()
    out, _ = split.redact(body)
    sent = json.loads(out)
    parts = sent["contents"][0]["parts"] if fmt == "gemini" else sent["messages"][0]["content"]
    joined = "".join(p["text"] for p in parts)
    assert value not in joined


# ---- a model name that holds a secret


def test_a_finding_in_the_model_is_named_by_its_kind():
    guardrails = Guardrails([GuardrailRule(detect=["secrets"], action="audit")])
    body = json.dumps({"model": f"gpt-{GITHUB}", "messages": [{"role": "user", "content": "hi"}]}).encode()
    assert guardrails.scan(body, "openai", None, None, ()).found_in(body, ("model",)) == "secrets.github_token"
    clean = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": GITHUB}]}).encode()
    scan = guardrails.scan(clean, "openai", None, None, ())
    assert scan.counts() == {"secrets.github_token": 1}
    assert scan.found_in(clean, ("model",)) is None


def test_tollgates_own_key_in_a_document_is_denied_without_rules():
    own = "sk-real-tollgate-key-" + "0123456789abcdef"
    value = base64.b64encode(f"OPENAI_API_KEY={own}\n".encode()).decode()
    body = json.dumps(user({"type": "file", "file": {"file_data": value, "filename": "a.env"}})).encode()
    guardrails = Guardrails(own_keys=[own])
    assert guardrails.scan(body, "openai", None, None, ()).may_attach
    docs, _ = documents.read(openai(read_request_json(body)))
    assert guardrails.scan(body, "openai", None, None, (), documents=docs).denied_counts() == {"tollgate_keys": 1}


def test_a_document_whose_string_is_not_where_its_path_says_is_not_written_back():
    body = json.dumps(user({"type": "file", "file": {"file_data": B64, "filename": "a.env"}})).encode()
    (doc,), _ = documents.read(openai(read_request_json(body)))
    moved = documents.Document(("messages", 0, "content", 9, "file", "file_data"), doc.text)
    scan = redacting().scan(body, "openai", None, None, (), documents=[moved])
    assert scan.counts()
    with pytest.raises(ValueError):
        scan.redact(body)


def test_consecutive_messages_of_one_speaker_are_joined_and_of_two_are_not():
    first, second = f"my key is {samples.AWS_KEY_ID[:9]}", f"{samples.AWS_KEY_ID[9:]} and that is all"
    guardrails = redacting()
    for roles, found in ((("user", "user"), {"secrets.aws_access_key_id": 1}), (("user", "assistant"), {})):
        data = {
            "messages": [
                {"role": roles[0], "content": first},
                {"role": roles[1], "content": [{"type": "text", "text": second}]},
            ]
        }
        body = json.dumps(data).encode()
        scan = guardrails.scan(body, "anthropic", None, None, (), runs=anthropic_runs(read_request_json(body)))
        assert scan.counts() == found
        if found:
            out, replaced = scan.redact(body)
            sent = json.loads(out)["messages"]
            assert (sent[0]["content"], sent[1]["content"][0]["text"], replaced) == (
                "my key is [REDACTED:secrets.aws_access_key_id]",
                "[REDACTED:secrets.aws_access_key_id] and that is all",
                2,
            )


def test_runs_end_at_a_part_of_another_kind_and_at_another_speaker():
    data = {
        "system": [{"type": "text", "text": "s1"}, {"type": "text", "text": "s2"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image", "source": {}},
                    {"type": "text", "text": "b"},
                ],
            },
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
        ],
    }
    assert [[value for _, value in run] for run in anthropic_runs(data)] == [["b", "c"], ["s1", "s2"]]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(SPLIT)),
    st.lists(st.integers(min_value=1), min_size=2, max_size=5),
    st.sampled_from(["anthropic", "openai", "gemini"]),
)
@pytest.mark.slow
def test_a_secret_cut_in_several_short_parts_is_found_once(kind, cuts, fmt):
    secret, value = SPLIT[kind]
    whole = f"note:\n{secret}\nend"
    at = sorted({6 + c % (len(secret) - 1) for c in cuts})  # inside the secret
    texts = [whole[a:b] for a, b in zip([0, *at], [*at, len(whole)], strict=True)]
    body, split = scan_parts(texts, fmt)
    assert split.counts() == {kind: 1}
    out, _ = split.redact(body)
    sent = json.loads(out)
    parts = sent["contents"][0]["parts"] if fmt == "gemini" else sent["messages"][0]["content"]
    assert value not in "".join(p["text"] for p in parts)
