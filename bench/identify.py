"""What identifying a caller by JWT costs, in process: no proxy, no network, no sockets.

The pipeline is loaded as mitmdump loads it (`tollgate.proxy.pipeline.gateway()`, configured through
mitmproxy's test context) with a virtual key and one JWT issuer whose RS256 and ES256 keys are
in a `jwks_file` (so that no fetch is timed). Each call is a fresh OpenAI chat-completion flow;
the hooks before the identify step run outside the timing, then the identify step alone (the call
step whose owner is `Identify`) is timed with `time.perf_counter_ns()` either side, awaiting it if
it returns an awaitable.

Printed, per call:

  virtual key          the identify step for a virtual key (a dict lookup);
  JWT, cached          the same RS256 token again (verified once before the timing);
  RS256 first verify   a fresh token each call (its own `sub` and `jti`): the signature checked;
  ES256 first verify   the same with ES256.

The mean and p50 of the best round are printed for each.

    .venv/bin/python bench/identify.py [--calls 2000] [--fresh 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "addons"))

import yaml  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from mitmproxy import http  # noqa: E402
from mitmproxy.addons import proxyserver  # noqa: E402
from mitmproxy.test import taddons, tflow  # noqa: E402

from tollgate.proxy.flows import call_of  # noqa: E402
from tollgate.proxy.pipeline import gateway as tollgate  # noqa: E402
from tollgate.proxy.runner import CallSteps  # noqa: E402

VIRTUAL_KEY = "tg-bench-app-0123456789abcdef"
ISSUER, AUDIENCE, PREFIX = "https://idp.bench.test", "tollgate", "idp:"
BODY = json.dumps(
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 64},
    separators=(",", ":"),
).encode()


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.serial = 0

    def jwks(self) -> dict:
        from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # PyJWT: imported here, see subject()

        return {
            "keys": [
                {**RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True), "kid": "rsa", "alg": "RS256"},
                {**ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True), "kid": "ec", "alg": "ES256"},
            ]
        }

    def token(self, alg: str) -> str:
        import jwt

        self.serial += 1
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"user-{self.serial}",
            "jti": f"jti-{self.serial}",
            "groups": ["bench"],
            "iat": now,
            "exp": now + 3600,
        }
        key, kid = (self.rsa, "rsa") if alg == "RS256" else (self.ec, "ec")
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def config(workdir: Path, keys: Keys) -> Path:
    jwks = workdir / "jwks.json"
    jwks.write_text(json.dumps(keys.jwks()))
    path = workdir / "tollgate.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "providers": {"openai": {"upstream": "https://127.0.0.1:9", "keys": ["sk-proj-bench"]}},
                "clients": [{"name": "bench-app", "keys": [VIRTUAL_KEY], "groups": ["support"]}],
                "identity": {
                    "jwt": [
                        {
                            "issuer": ISSUER,
                            "audience": AUDIENCE,
                            "jwks_file": str(jwks),
                            "algorithms": ["RS256", "ES256"],
                            "client_prefix": PREFIX,
                        }
                    ]
                },
                "audit": {"path": str(workdir / "audit.jsonl")},
            }
        )
    )
    return path


def new_flow(credential: str) -> http.HTTPFlow:
    flow = tflow.tflow()
    request = flow.request
    request.host, request.port, request.scheme = "api.openai.com", 443, "https"
    flow.client_conn.sni = "api.openai.com"  # as a client through the proxy names the host it calls
    request.method, request.path = "POST", "/v1/chat/completions"
    request.headers.fields = (
        (b"host", b"api.openai.com"),
        (b"authorization", f"Bearer {credential}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    )
    request.raw_content = BODY
    flow.response = None
    return flow


def split_at_identify(gateway) -> tuple[list[Callable], Callable]:
    """The steps mitmproxy runs before the identify step (requestheaders, then request), and the
    identify step, each taking a flow."""
    before: list[Callable] = list(gateway.steps.get("requestheaders", ()))
    for step in gateway.steps.get("request", ()):
        owner = getattr(step, "__self__", None)
        if not isinstance(owner, CallSteps):
            before.append(step)
            continue
        if step.__name__ != "at_request":
            continue
        for call_step in owner.steps:
            if type(getattr(call_step, "__self__", None)).__name__ == "Identify":
                return before, lambda flow, s=call_step: s(flow, call_of(flow))
            before.append(lambda flow, s=call_step: None if flow.response is not None else s(flow, call_of(flow)))
    raise SystemExit("no Identify call step in the pipeline")


async def identify_times(gateway, credentials: list[str], expected: Callable[[str], str]) -> list[float]:
    """µs the identify step took for each of these credentials, each on a fresh flow."""
    before, identify = split_at_identify(gateway)
    flows = [new_flow(c) for c in credentials]
    for flow in flows:
        for step in before:
            if (pending := step(flow)) is not None:
                await pending
    times = []
    for flow in flows:
        start = time.perf_counter_ns()
        if (pending := identify(flow)) is not None:
            await pending
        times.append((time.perf_counter_ns() - start) / 1000)
    for flow, credential in zip(flows, credentials, strict=True):
        assert flow.response is None, f"refused: {flow.response.content!r}"
        call = call_of(flow)
        assert call.caller.client == expected(credential), (call.caller.client, call.caller.auth)
    return times


async def measure(args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    keys = Keys()
    gateway = tollgate()
    results: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as work, taddons.context(proxyserver.Proxyserver(), gateway) as tctx:
        tctx.configure(gateway, tollgate_config=str(config(Path(work), keys)))
        cached = keys.token("RS256")
        cached_client = subject(cached)

        runs = {
            "virtual key": lambda: ([VIRTUAL_KEY] * args.calls, lambda _: "bench-app"),
            "JWT, cached": lambda: ([cached] * args.calls, lambda _: cached_client),
            "RS256 first verify": lambda: ([keys.token("RS256") for _ in range(args.fresh)], subject),
            "ES256 first verify": lambda: ([keys.token("ES256") for _ in range(args.fresh)], subject),
        }
        await identify_times(gateway, [VIRTUAL_KEY, cached, keys.token("ES256")] * 50, subject_or_key(subject))
        for _ in range(args.rounds):
            for label, make in runs.items():
                credentials, expected = make()
                results.setdefault(label, []).append(await identify_times(gateway, credentials, expected))
        if (pending := gateway.done()) is not None:
            await pending
    best = {}
    for label, rounds in results.items():
        means = [(statistics.fmean(r), statistics.median(r)) for r in rounds]
        best[label] = min(means)
    return best


def subject(token: str) -> str:
    """The client a token names. PyJWT is imported in the functions that use it: this file's name
    makes ruff's import sorting count `jwt` as first-party, and a lone import sorts alike either way."""
    import jwt

    return PREFIX + jwt.decode(token, options={"verify_signature": False})["sub"]


def subject_or_key(subject: Callable[[str], str]) -> Callable[[str], str]:
    return lambda credential: "bench-app" if credential == VIRTUAL_KEY else subject(credential)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per round for the virtual key and cached JWT")
    parser.add_argument("--fresh", type=int, default=500, help="fresh tokens per round for each algorithm")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best (lowest mean) is printed")
    args = parser.parse_args()
    best = asyncio.run(measure(args))
    width = max(map(len, best))
    print(f"identify step, µs per call, best of {args.rounds} rounds (Python {sys.version.split()[0]})")
    print(f"  {'':<{width}}  {'mean':>8}  {'p50':>8}")
    for label, (mean, p50) in best.items():
        print(f"  {label:<{width}}  {mean:8.1f}  {p50:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
