#!/usr/bin/env python3
"""Re-verifies an AgentSec audit export (JSON lines from ExportEvents).

Checks, with nothing but the Python standard library, that every line's
`event` is canonical (RFC 8785 JSON of the documented object), that its hash
is SHA-256(prev_hash || canonical_bytes), and, for an unfiltered export, that
the lines link up with gap-free sequence numbers. See docs/audit-chain.md.

Usage: verify_audit_export.py EXPORT.jsonl [--filtered]
Prints "ok: N events" and exits 0, or names the first bad line and exits 1.
"""
import hashlib
import json
import sys

KEYS = [
    "action", "actor_chain", "agent_id", "attributes", "audience", "decision_id",
    "id", "kind", "outcome", "person_subject", "policy_ids", "reason",
    "resource_id", "resource_type", "service", "span_id", "tenant", "time",
    "trace_id",
]


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def main() -> int:
    path = sys.argv[1]
    contiguous = "--filtered" not in sys.argv[2:]
    prev_hash, prev_sequence, count = None, None, 0
    with open(path, "rb") as export:
        for number, raw in enumerate(export, start=1):
            line = json.loads(raw)
            sequence, event = line["sequence"], line["event"]
            if canonical(line) + b"\n" != raw:
                return fail(number, sequence, "line is not in canonical form")
            if sorted(event) != KEYS:
                return fail(number, sequence, "event does not have exactly the documented keys")
            digest = hashlib.sha256(bytes.fromhex(line["prev_hash"]) + canonical(event)).hexdigest()
            if digest != line["hash"]:
                return fail(number, sequence, f"hash is {line['hash']} but the event hashes to {digest}")
            if contiguous and prev_sequence is not None:
                if sequence != prev_sequence + 1:
                    return fail(number, sequence, f"sequence follows {prev_sequence}: events are missing")
                if line["prev_hash"] != prev_hash:
                    return fail(number, sequence, "prev_hash does not match the previous line's hash")
            if contiguous and prev_sequence is None and sequence == 1 and line["prev_hash"] != "0" * 64:
                return fail(number, sequence, "the first event's prev_hash is not 64 zeros")
            prev_hash, prev_sequence, count = line["hash"], sequence, count + 1
    print(f"ok: {count} events")
    return 0


def fail(number: int, sequence: int, why: str) -> int:
    print(f"line {number} (sequence {sequence}): {why}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
