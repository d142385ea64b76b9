"""Every text Tollgate puts on a flow can be saved; the audit record keeps the original."""

from __future__ import annotations


def test_every_text_on_the_flow_is_encodable_and_the_record_unchanged():
    from mitmproxy.io import tnetstring

    from tollgate.proxy.stages.records.audit import encodable, storable

    record = {
        "model": "gpt-4o\ud800",
        "client": "jürgen",
        "deny_reasons": ["model gpt-4o\udcff"],
        "status": 403,
        "groups": ["a"],
    }
    fixed = storable(record)
    tnetstring.dumps(fixed)
    assert fixed == {
        "model": "gpt-4o\\ud800",
        "client": "jürgen",
        "deny_reasons": ["model gpt-4o\\udcff"],
        "status": 403,
        "groups": ["a"],
    }
    assert record["model"] == "gpt-4o\ud800" and record["deny_reasons"] == ["model gpt-4o\udcff"]
    plain = {"model": "gpt-4o", "client": "jürgen", "groups": ["a"]}
    assert storable(plain) is plain
    assert encodable("alice · openai/gpt-4o\ud800") == "alice · openai/gpt-4o\\ud800"
