"""The demo's stand-in provider answers in each provider's shape, streamed and not, with usage, and
says back the last user text it got."""

from __future__ import annotations

import json

from tollgate.demo.standin import StandinAnswer, answer, last_user_text

CHAT = "/v1/chat/completions"


def post(path: str, body: dict, **headers: str) -> StandinAnswer:
    return answer("POST", path, headers, json.dumps(body).encode())


def events(answered: StandinAnswer) -> list[dict]:
    assert answered.pieces is not None and answered.content_type == "text/event-stream"
    data = [p.decode().rpartition("data: ")[2].strip() for p in answered.pieces]
    return [json.loads(d) for d in data if d != "[DONE]"]


def test_the_last_user_text_of_each_format():
    assert (
        last_user_text({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}) == "a"
    )
    parts = [{"type": "text", "text": "x"}, {"type": "image_url"}, {"type": "text", "text": "y"}]
    assert last_user_text({"messages": [{"role": "user", "content": parts}]}) == "x  y"
    assert last_user_text({"input": "hi"}) == "hi"
    assert last_user_text({"input": [{"role": "user", "content": [{"type": "input_text", "text": "r"}]}]}) == "r"
    assert last_user_text({"contents": [{"parts": [{"text": "g"}]}]}) == "g"
    assert last_user_text({}) == ""


def test_openai_chat_with_usage_and_a_stream_with_it_only_when_asked():
    whole = json.loads(post(CHAT, {"model": "m", "messages": [{"role": "user", "content": "two words"}]}).body)
    assert whole["choices"][0]["message"]["content"] == "(stand-in OpenAI) You said: two words"
    assert whole["usage"] == {"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8}
    plain = events(post(CHAT, {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}))
    assert all("usage" not in chunk for chunk in plain)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in plain) == "(stand-in OpenAI) You said: hi"
    asked = events(
        post(CHAT, {"model": "m", "stream": True, "stream_options": {"include_usage": True}, "messages": []})
    )
    assert [c["usage"] for c in asked[:-1]] == [None] * (len(asked) - 1)
    assert (asked[-1]["choices"], asked[-1]["usage"]["total_tokens"]) == ([], 4)


def test_responses_anthropic_and_gemini_streams_end_with_their_usage():
    responses = events(post("/v1/responses", {"model": "m", "stream": True, "input": "hi"}))
    assert responses[-1]["type"] == "response.completed"
    assert responses[-1]["response"]["usage"]["total_tokens"] == 6
    anthropic = events(
        post("/v1/messages", {"model": "c", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    )
    assert [e["type"] for e in anthropic][:2] == ["message_start", "content_block_start"]
    assert anthropic[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 5},
    }
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    sse = events(post("/v1beta/models/g:streamGenerateContent?alt=sse", body))
    assert sse[-1]["usageMetadata"] == {"promptTokenCount": 1, "candidatesTokenCount": 5, "totalTokenCount": 6}
    array = post("/v1beta/models/g:streamGenerateContent", body)
    assert array.pieces is not None
    assert json.loads(b"".join(array.pieces)) == sse  # without alt=sse: one JSON array, the same objects


def test_a_path_it_does_not_serve_is_404_in_the_providers_shape():
    assert json.loads(post("/v1/files", {}).body)["error"]["type"] == "invalid_request_error"
    missing = post("/v1/complete", {}, **{"anthropic-version": "2023-06-01"})
    assert (missing.status, json.loads(missing.body)["type"]) == (404, "error")
    assert answer("POST", CHAT, {}, b"{not json").status == 400


def test_asked_for_the_deploy_key_it_answers_with_one_the_secrets_detectors_find():
    from tollgate.demo.standin import DEPLOY_KEY
    from tollgate.governance.guardrails.detectors import BUILTIN

    body = {"model": "m", "messages": [{"role": "user", "content": "What is the Deploy Key?"}]}
    text = json.loads(post(CHAT, body).body)["choices"][0]["message"]["content"]
    assert text == f"(stand-in OpenAI) The deploy key is {DEPLOY_KEY}."
    secrets = [d for d in BUILTIN if d.kind.startswith("secrets.")]
    found = [d.kind for d in secrets for _ in d.find(text.encode(), 0, len(text))]
    assert found == ["secrets.aws_access_key_id"]
