"""What the end-to-end tests of the answer guardrails share: the values they plant, a gateway whose
fake upstreams all answer through one handler, the pace of a denied stream's upstream (to see it
closed), and the answer metrics as the metrics endpoint gives them."""

from __future__ import annotations

import socket
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# The answer metrics' families: findings by provider, kind and action; answers cut by kind.
ANSWER_FAMILIES = ("tollgate_guardrail_answer_findings_total", "tollgate_guardrail_answers_cut_total")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answer_samples(listen: str) -> dict[tuple[str, ...], float]:
    """The answer metrics the endpoint at `listen` gives now: (family, provider, kind[, action]) →
    value. Its server opens once the configuration has loaded: waited for, up to 10 s."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as r:
                text = r.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ANSWER_FAMILIES:
                labels = sample.labels
                action = (labels["action"],) if "action" in labels else ()
                found[(sample.name, labels["provider"], labels["kind"], *action)] = sample.value
    return found
