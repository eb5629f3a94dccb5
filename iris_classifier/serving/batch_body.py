"""A /classify_batch body in the layout clients write, read straight to rows of cm without an object per flower.

`well_formed_batch` (domain/schema.py) parses the body into a dict per flower and checks it; for 10,000 flowers
that parse, on the event loop, was most of the request's cost. Most clients write every flower's keys in the
schema's order, compact (orjson, JSON.stringify) or with Python's default separators (`json.dumps`,
`requests`). For such a body the JSON around the numbers is known to the byte: it is replaced by one marker
byte per place, the markers left once the number characters are taken out must be exactly the expected
sequence (so nothing else is in the body: no string, object, list, literal or whitespace), and the numbers,
joined by commas, are read by orjson as one flat JSON array (so JSON's number grammar holds, exactly as when
the whole body is parsed). Any other body returns None and takes the general path, which accepts the same.
"""

from __future__ import annotations

import numpy as np
import orjson

from iris_classifier.domain.schema import FEATURES, MAX_BATCH_FLOWERS, MAX_MEASUREMENT_CM

NUMBER_CHARACTERS = b"0123456789.eE+-"
# One marker byte per place the JSON around the numbers can take: between two flowers, and before each key but the
# first. Bytes below 0x20 never appear unescaped in valid JSON, so a marker is never part of a body.
BETWEEN_FLOWERS, *BEFORE_KEY = (bytes([code]) for code in range(1, len(FEATURES) + 1))
COMMAS = bytes.maketrans(BETWEEN_FLOWERS + b"".join(BEFORE_KEY), b"," * len(FEATURES))


def layouts() -> list[tuple[bytes, bytes, list[tuple[bytes, bytes]]]]:
    """Per layout: the body's opening, its first flower's opening, and (text, marker) replacements in order."""
    found = []
    for item, key in ((b",", b":"), (b", ", b": ")):  # compact; Python's json.dumps default
        opening = b'{"flowers"' + key + b"["
        first = b'{"' + FEATURES[0].encode() + b'"' + key
        replacements = [(b"}" + item + first, BETWEEN_FLOWERS)]
        replacements += [
            (item + b'"' + name.encode() + b'"' + key, marker)
            for name, marker in zip(FEATURES[1:], BEFORE_KEY, strict=True)
        ]
        found.append((opening, first, replacements))
    return found


LAYOUTS = layouts()
CLOSING = b"}]}"


def batch_rows(body: bytes) -> np.ndarray | None:
    """The (N, 4) float64 rows of cm of a /classify_batch body in a known layout whose every value passes the
    measurement rules (1 <= N <= MAX_BATCH_FLOWERS); None for any other body (the general path decides)."""
    layout = next((layout for layout in LAYOUTS if body.startswith(layout[0] + layout[1])), None)
    if layout is None or not body.endswith(CLOSING):
        return None
    opening, first, replacements = layout
    inner = body[len(opening) + len(first) : -len(CLOSING)]
    if any(marker in inner for _, marker in replacements):  # a control byte: not JSON (and not a marker of ours)
        return None
    for text, marker in replacements:
        inner = inner.replace(text, marker)
    flowers = inner.count(BETWEEN_FLOWERS) + 1
    if flowers > MAX_BATCH_FLOWERS:
        return None
    one = b"".join(BEFORE_KEY)
    if inner.translate(None, NUMBER_CHARACTERS) != (one + BETWEEN_FLOWERS) * (flowers - 1) + one:
        return None
    try:
        values = orjson.loads(b"[" + inner.translate(COMMAS) + b"]")
    except orjson.JSONDecodeError:  # an empty value, or a number JSON does not allow (01, .5, +1, 1.)
        return None
    try:
        rows = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer too big for a float
        return None
    if len(rows) != flowers * len(FEATURES):
        return None
    if not (np.isfinite(rows).all() and (rows > 0).all() and (rows <= MAX_MEASUREMENT_CM).all()):
        return None
    return rows.reshape(flowers, len(FEATURES))
