"""Limits on JSON from another party, applied before any parser sees it.

Used by the wire format (:mod:`deltaml.services.wire`), the HTTP body guard and the
transcript reader (:mod:`deltaml.evidence.transcript`), so it sits low enough for all
of them to import.
"""

from __future__ import annotations

import re

import numpy as np

from deltaml.errors import DeltaMLValueError

#: Deepest nesting of arrays and objects :func:`loads` lets the JSON parser see. Messages
#: need about 7 levels. The limit matters: ``py_ecc`` (imported with the Ethereum
#: libraries) raises Python's recursion limit to 100,000, so the C JSON parser no
#: longer stops deep input with a RecursionError and overflows the C stack instead
#: (a segmentation fault, measured with 100,000 nested ``[``).
MAX_JSON_DEPTH = 32


#: A JSON string (possessive quantifiers: linear time, no backtracking).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_CHUNK = 1 << 20


def check_json_depth(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON text nested deeper than ``max_depth`` before any parser sees it.

    Services should call this on every JSON body they parse from another party
    (FastAPI's own body parsing included): see :data:`MAX_JSON_DEPTH` for why the
    parser cannot be trusted to refuse by itself. Strings are skipped, brackets
    are counted with numpy in chunks, so 64 MiB take well under a second. Input
    that is not JSON may be over-counted (an unterminated string), never
    under-counted: the parser refuses it either way.
    """
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _DEPTH_CHUNK):
        chunk = np.frombuffer(brackets[start : start + _DEPTH_CHUNK], dtype=np.uint8)
        opens = (chunk == ord("[")) | (chunk == ord("{"))
        running = np.cumsum(np.where(opens, 1, -1), dtype=np.int64) + depth
        if int(running.max()) > max_depth:
            raise DeltaMLValueError(f"invalid JSON: nested deeper than {max_depth} levels")
        depth = int(running[-1])
