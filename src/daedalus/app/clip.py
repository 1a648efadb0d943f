"""Clipping: what an error message, a log line or an error report may quote of a value.

A caller's value (a name, a path, an argument, a Host) can be of any length; every surface
quotes at most `CLIP` characters of one, a whole message at most `MAX_MESSAGE`, a list inside
an error's details at most `MAX_ITEMS` items.
"""

from __future__ import annotations

import re
from typing import Any

from daedalus.app.jsonable import jsonable

__all__ = ["CLIP", "MAX_ITEMS", "MAX_MESSAGE", "clip", "clip_reports", "clip_text", "clipped"]

#: The most characters of any one value (an argument, a name, a path, a quoted run of a
#: message) that an error or a log line quotes.
CLIP = 200
#: The most characters of one message.
MAX_MESSAGE = 1000
#: The most items of one list inside an error's details.
MAX_ITEMS = 50

#: A quoted run (closed or not) or a word longer than CLIP characters.
_LONG_RUN = re.compile(rf"'[^']{{{CLIP},}}'?|\"[^\"]{{{CLIP},}}\"?|[^\s'\"]{{{CLIP + 1},}}")


def clip(text: str, width: int = CLIP, mark: str = "...") -> str:
    """`text` cut to `width` characters, `mark` appended when it was cut."""
    return text if len(text) <= width else text[:width] + mark


def clip_text(text: str) -> str:
    """`text` with every quoted run or word over CLIP characters clipped, and at most
    MAX_MESSAGE characters in all: what an error message may quote of a client's value."""
    return clip(_LONG_RUN.sub(lambda m: clip(m.group(), mark="…"), text), MAX_MESSAGE, "…")


def clipped(value: Any, max_items: int | None = MAX_ITEMS) -> Any:
    """A JSON value with every string clipped (`clip_text`) and every list or object cut to
    `max_items` entries (a last entry says how many more there were)."""
    if isinstance(value, str):
        return clip_text(value)
    if isinstance(value, dict):
        items = list(value.items())
        kept = items if max_items is None else items[:max_items]
        out = {clip(str(k), mark="…"): clipped(v, max_items) for k, v in kept}
        if len(kept) < len(items):
            out["…"] = f"{len(items) - len(kept)} more"
        return out
    if isinstance(value, list):
        kept_list = value if max_items is None else value[:max_items]
        out_list = [clipped(v, max_items) for v in kept_list]
        if len(kept_list) < len(value):
            out_list.append(f"… {len(value) - len(kept_list)} more")
        return out_list
    return value


def clip_reports(answer: Any) -> Any:
    """An answer with its error reports (the `error` and `errors` of it, or of each of its
    `jobs`: a job's error, located catalog errors) clipped as errors are; the rest of an
    answer is data and is left whole."""
    if not isinstance(answer, dict):
        return answer

    def clean(record: dict[str, Any]) -> dict[str, Any]:
        out = dict(record)
        for key in ("error", "errors"):
            if out.get(key) is not None:
                out[key] = clipped(jsonable(out[key]), None)
        return out

    if isinstance(answer.get("jobs"), list):
        return {**answer, "jobs": [clean(j) if isinstance(j, dict) else j for j in answer["jobs"]]}
    return clean(answer)
