"""A verifier's state, saved and restored: the console keeps it beside the audit, so that a
restart checks only the lines written since (`audit_verify`). Each file name goes through `name`
(saved) and `named` (restored): the console saves a file's number among those it reads, which a
rotation renames."""

from __future__ import annotations

import base64
from array import array
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tollgate.records.audit.anchor_verify import AnchorRules, RunAnchors
from tollgate.records.audit.audit_verify import Entry, Fault, Run, Summary, Unsigned, Verifier
from tollgate.records.audit.last_records import WINDOW, Kept, LastRecords, Place


def saved_state(verifier: Verifier, name: Callable[[str], Any]) -> dict[str, Any]:
    """What `verifier` has read, as JSON values (its columns of last records as base64)."""

    def place(p: Place) -> list[Any]:
        return [name(p.file), p.line]

    def entry(e: Entry | None) -> list[Any] | None:
        if e is None:
            return None
        return [place(e.place), e.seq, e.chain, e.content.hex(), e.event, e.ts, e.previous_chain]

    def last(kept: LastRecords) -> dict[str, Any]:
        return {
            "columns": [base64.b64encode(c.tobytes() if isinstance(c, array) else bytes(c)).decode()
                        for c in (kept.seqs, kept.chains, kept.lines, kept.files)],
            "files": [name(f) for f in kept.file_names],
            "apart": [[seq, k.chain, place(k.place)] for seq, k in kept.apart.items()],
        }  # fmt: skip

    def run(r: Run) -> dict[str, Any]:
        return {
            "instance": r.instance, "first": entry(r.first), "kept": last(r.by_seq), "last": entry(r.last),
            "waiting": [entry(e) for e in r.waiting.values()], "stopped": entry(r.stopped),
            "checkpoint": entry(r.checkpoint), "checkpoint_covers": r.checkpoint_covers, "records": r.records,
            "signed": r.signed, "named_by_next": r.named_by_next,
            "anchors": None if r.anchors is None else r.anchors.saved(place),
        }  # fmt: skip

    def part(u: Unsigned) -> list[Any]:
        return [place(u.first), [place(p) for p in u.checkpoints], u.records, u.signed_at and place(u.signed_at)]

    return {
        "key_id": verifier.key_id,
        "anchor_rules": None if verifier.anchors is None else verifier.anchors.fingerprint,
        "live": verifier.live,
        "faults": [[place(f.place), f.what] for f in verifier.faults],
        "summary": asdict(verifier.summary),
        "runs": [run(r) for r in verifier.runs.values()],
        "ended": {i: [run(r) for r in runs] for i, runs in verifier.ended.items()},
        "kept": [[chain, place(p), instance, seq] for chain, (p, instance, seq) in verifier.kept.items()],
        "counted": verifier.counted,
        "unsigned": {i: part(u) for i, u in verifier.unsigned.items()},
        "first_signed_run": {
            i: [*verifier.ended.get(i, ()), verifier.runs[i]].index(r) for i, r in verifier.first_signed_run.items()
        },
    }


def restored_verifier(
    state: dict[str, Any],
    key: Ed25519PublicKey | None,
    named: Callable[[Any], str],
    anchors: AnchorRules | None = None,
) -> Verifier:
    """The verifier `saved_state` saved, to read on with `key` (and `anchors`); ValueError (or
    KeyError, TypeError) when the state is not one it saved, or was saved with another key or
    other anchor rules."""
    verifier = Verifier(key, bool(state["live"]), anchors)
    if state["key_id"] != verifier.key_id:
        raise ValueError("the signatures were checked with another key")
    if state.get("anchor_rules") != (None if anchors is None else anchors.fingerprint):
        raise ValueError("the anchors were checked with other roots or another window")

    def place(p: list[Any]) -> Place:
        return Place(named(p[0]), int(p[1]))

    def entry(e: list[Any] | None) -> Entry | None:
        if e is None:
            return None
        return Entry(place(e[0]), int(e[1]), str(e[2]), bytes.fromhex(e[3]), e[4], e[5], e[6])

    def last(saved: dict[str, Any]) -> LastRecords:
        kept = LastRecords()
        seqs, chains, lines, files = (base64.b64decode(c) for c in saved["columns"])
        kept.seqs.frombytes(seqs)
        kept.chains.extend(chains)
        kept.lines.frombytes(lines)
        kept.files.frombytes(files)
        if not len(kept.seqs) == len(kept.lines) == len(kept.files) == len(kept.chains) // 32 <= WINDOW:
            raise ValueError("columns of different lengths")
        kept.file_names = [named(f) for f in saved["files"]]
        kept.file_numbers = {f: n for n, f in enumerate(kept.file_names)}
        if any(not 0 <= n < len(kept.file_names) for s, n in zip(kept.seqs, kept.files, strict=True) if s):
            raise ValueError("a record of no file")
        kept.apart = {int(seq): Kept(str(chain), place(p)) for seq, chain, p in saved["apart"]}
        return kept

    def run(saved: dict[str, Any]) -> Run:
        first = entry(saved["first"])
        if first is None:
            raise ValueError("a run with no first record")
        r = Run(str(saved["instance"]), first, last(saved["kept"]), entry(saved["last"]))
        r.waiting = {e.seq: e for e in map(entry, saved["waiting"]) if e is not None}
        r.stopped, r.checkpoint = entry(saved["stopped"]), entry(saved["checkpoint"])
        r.checkpoint_covers, r.records, r.signed = (int(saved[k]) for k in ("checkpoint_covers", "records", "signed"))
        r.named_by_next = bool(saved["named_by_next"])
        kept = saved.get("anchors")
        r.anchors = None if kept is None else RunAnchors.restored(kept, place)
        return r

    verifier.faults = [Fault(place(p), str(what)) for p, what in state["faults"]]
    verifier.summary = Summary(**state["summary"])
    verifier.runs = {r.instance: r for r in map(run, state["runs"])}
    verifier.ended = {str(i): [run(r) for r in runs] for i, runs in state["ended"].items()}
    verifier.kept = {str(chain): (place(p), str(i), seq) for chain, p, i, seq in state["kept"]}
    verifier.counted = {str(i): int(n) for i, n in state["counted"].items()}
    verifier.unsigned = {
        str(i): Unsigned(place(first), [place(p) for p in checkpoints], int(records), signed_at and place(signed_at))
        for i, (first, checkpoints, records, signed_at) in state["unsigned"].items()
    }
    verifier.first_signed_run = {
        str(i): [*verifier.ended.get(i, ()), verifier.runs[i]][int(n)] for i, n in state["first_signed_run"].items()
    }
    return verifier
