"""Audit files built record by record whose checkpoints a real TSA time-stamps (OpenSSL's
`openssl ts -reply`, tests/support/tsa.py): shared by the tests of `verify --anchors`, of its docs
and of the console's Audit view."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rfc3161_client import TimestampRequestBuilder, decode_timestamp_response
from tests.support.tsa import Tsa

from tollgate.common.audit_chain import Chain, Signer
from tollgate.records.audit.anchor_verify import iso
from tollgate.records.audit.audit_record import utc_timestamp
from tollgate.records.audit.der_order import reply_in_der_order, token_of

KEY = Ed25519PrivateKey.generate()
HOUR = 3600.0


def stamp(tsa: Tsa, covers_chain: str) -> tuple[str, str]:
    """A token of `covers_chain` from the TSA, as an audit_anchor record holds it, and its gen_time."""
    query = TimestampRequestBuilder().data(covers_chain.encode()).nonce(nonce=True).cert_request(cert_request=True)
    reply = tsa.reply_to(query.build().as_bytes())
    response = decode_timestamp_response(reply_in_der_order(reply))  # a TSA that sends its chain too
    token = token_of(reply)  # as the TSA sent it, as the anchorer keeps it
    assert token is not None
    return base64.b64encode(token).decode(), iso(response.tst_info.gen_time)


class Writer:
    """An instance's records as the writer makes them (chained, checkpoints signed), each at a
    time given in seconds; anchors from the TSA."""

    def __init__(self, tsa: Tsa, instance: str = "gw-1") -> None:
        self.tsa, self.instance = tsa, instance
        self.chain = Chain()
        self.signer = Signer(KEY)
        self.records: list[dict] = []  # as written, without seq and chain
        self.lines: list[bytes] = []

    def record(self, at: float, event: str, **fields: object) -> None:
        record = {"event": event, "instance": self.instance, "ts": utc_timestamp(at), **fields}
        self.records.append(record)
        self.lines.append(self.chain.link(orjson.dumps(record)))

    def start(self, at: float) -> None:
        """A run begun: its started record names the last chain of the run before, if any."""
        previous = None if not self.lines else self.lines[-1][-66:-2].decode()
        self.chain = Chain()
        self.record(at, "tollgate_started", pid=1, previous_chain=previous)

    def calls(self, at: float, n: int) -> None:
        for i in range(n):
            self.record(at, "llm_call", request_id=f"r{len(self.records)}", client="alice", input_tokens=10 + i)

    def checkpoint(self, at: float) -> dict:
        checkpoint = self.chain.checkpoint(self.signer, utc_timestamp(at))
        self.record(at, "audit_checkpoint", **{k: v for k, v in checkpoint.items() if k not in ("event", "ts")})
        return checkpoint

    def anchor(self, at: float, checkpoint: dict, tsa: Tsa | None = None) -> None:
        """An audit_anchor record of `checkpoint` by the writer's TSA, or `tsa`."""
        by = tsa or self.tsa
        token, gen_time = stamp(by, checkpoint["covers_chain"])
        self.record(
            at, "audit_anchor", covers_seq=checkpoint["covers_seq"], covers_chain=checkpoint["covers_chain"],
            tsa=by.url, gen_time=gen_time, token=token,
        )  # fmt: skip

    def gap(self, at: float, checkpoint: dict, error: str = "connection refused") -> None:
        self.record(at, "anchor_gap", covers_seq=checkpoint["covers_seq"], tsa=self.tsa.url, error=error)

    def stop(self, at: float) -> None:
        self.record(at, "tollgate_stopped", pid=1, calls=0)
        self.checkpoint(at)

    def write(self, path: Path) -> Path:
        path.write_bytes(b"".join(line + b"\n" for line in self.lines))
        return path


def rewritten(
    records: list[dict],
    change: dict[int, dict],
    tsa_anchor: bool = False,
    key: Ed25519PrivateKey = KEY,
    restamp: Tsa | None = None,
) -> list[bytes]:
    """The records (their ts and all) with `change` applied to those of these indexes, chained
    again and every checkpoint signed again with the key: what an operator who holds the key
    can do. An anchor's covers_chain is made the new one with `tsa_anchor`; with `restamp`, each
    anchor is made anew by that TSA (now) for the checkpoint before it, as it stands."""
    chain, signer, lines, covers = Chain(), Signer(key), [], {}
    newest: tuple[int, str] | None = None
    for i, original in enumerate(records):
        record = dict(original) | change.get(i, {})
        if record["event"] == "audit_checkpoint":
            made = chain.checkpoint(signer, record["ts"])
            record |= {k: v for k, v in made.items() if k not in ("event", "ts")}
            covers[record["covers_seq"]] = record["covers_chain"]
            newest = (record["covers_seq"], record["covers_chain"])
        elif record["event"] == "audit_anchor" and restamp is not None:
            assert newest is not None
            token, gen_time = stamp(restamp, newest[1])
            record |= {"covers_seq": newest[0], "covers_chain": newest[1], "tsa": restamp.url}
            record |= {"gen_time": gen_time, "token": token}
        elif record["event"] == "audit_anchor" and tsa_anchor:
            record["covers_chain"] = covers[record["covers_seq"]]
        lines.append(chain.link(orjson.dumps(record)))
    return lines


def anchored_file(tsa: Tsa, now: float) -> Writer:
    """A run of two hours: a checkpoint every 30 minutes, each anchored, then a tail of 3 calls."""
    w = Writer(tsa)
    w.start(now - 2 * HOUR)
    every_half_hour(w, now - 2 * HOUR, 4)
    w.calls(now, 3)
    return w


def every_half_hour(w: Writer, since: float, count: int, anchored_after: float = 1) -> None:
    """`count` half hours from `since`: two calls each, then a checkpoint (a second later), anchored
    `anchored_after` seconds after the half hour began."""
    for k in range(count):
        at = since + k * HOUR / 2
        w.calls(at, 2)
        w.anchor(at + anchored_after, w.checkpoint(at + 1))
