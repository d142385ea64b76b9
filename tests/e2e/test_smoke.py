from __future__ import annotations

import pytest

REAL = {
    "openai": "sk-real-openai-0001",
    "gemini": "AIza-real-gemini-0001",
    "anthropic": "sk-ant-real-0001",
    "bedrock": "ABSKreal-bedrock-0001",
}
ALICE = "tg-alice-0123456789"


def config(urls: dict[str, str]) -> dict:
    return {
        "providers": {name: {"upstream": url, "keys": [REAL[name]]} for name, url in urls.items()},
        "clients": [{"name": "alice", "keys": [ALICE], "groups": ["research"]}],
    }


@pytest.fixture(scope="module")
def gw(start_gateway):
    return start_gateway(config)


def test_openai_chat(gw):
    gw.reset()
    result = gw.run(f"""
        from openai import OpenAI
        client = OpenAI(api_key="{ALICE}", max_retries=0)
        r = client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "system", "content": "be brief"}}, {{"role": "user", "content": "hi"}}])
        report(text=r.choices[0].message.content, tokens=r.usage.total_tokens)
    """)
    assert result == {"text": "Hi there.", "tokens": 28}, result
    seen = gw.fakes["openai"].received[-1]
    assert seen.headers["authorization"] == f"Bearer {REAL['openai']}"
    record = gw.last_audit()
    assert record["client"] == "alice"
    assert record["input_tokens"] == 21
