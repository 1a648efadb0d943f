"""Fuzz the YAML catalog loader with seeded mutations of the shipped definitions.

Each case copies `feature_views/*.yaml` into its own directory, mutates one or two of the files
(byte deletions; insertions of random bytes, NUL and other control characters, YAML syntax
characters and odd line breaks; duplicated and swapped lines; anchors and aliases, up to a
"billion laughs"; deep nesting; very long values; near-miss tokens), and loads it under a
per-case time limit. The only allowed outcomes are a valid catalog or `CatalogErrors` whose
every error names a file of the case, a line and column >= 1 inside it, and a message and hint
of bounded length. Anything else (another exception, a checker's "internal error", a hang) is
a failure that names the case's seed so it can be replayed.

300 cases by default (well under a minute); `DAEDA_HYPOTHESIS=thorough` runs 3,000, and
`DAEDA_FUZZ_SEED` picks another seed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from daedalus.catalog.errors import CatalogErrors
from daedalus.catalog.registry import FeatureCatalog

REPO = Path(__file__).resolve().parents[2]
DEMO = sorted((REPO / "feature_views").glob("*.yaml"))

THOROUGH = os.environ.get("DAEDA_HYPOTHESIS") == "thorough"
CASES = 3_000 if THOROUGH else 300
SEED = int(os.environ.get("DAEDA_FUZZ_SEED", "20240611"))
#: Wall-clock seconds one case may take; a bounded load of these files takes well under 1 s.
CASE_SECONDS = 10.0
#: The longest message (or hint) an error may carry; each quote in it is clipped to 80.
MESSAGE_LIMIT = 600

SYNTAX = ":-[]{}&*!|>'\"%@`#,?<=~\\"
CONTROL = [chr(c) for c in range(32) if c not in (9, 10, 13)] + ["\x7f", "\x85", "\x9f"]
ODD = ["\t", "\n", "\r", "\r\n", " ", "\u2028", "\u2029", "\ufeff", "\ufffe", "é", "😀", "…"]
TOKENS = [
    ("BIGINT", "BIGIN"),
    ("TIMESTAMPTZ", "TIMESTAMP"),
    ("DOUBLE", "DOUBLE[]"),
    ("VARCHAR", "STRUCT(a INT"),
    ("count", "cnt"),
    ("mean", "sum"),
    ("last_n", "last"),
    ("7d", "7x"),
    ("30d", "lifetime"),
    ("1h", "0h"),
    ("user", "usr"),
    ("artwork", "artwrk"),
    ("entity: user", "entity: [user, artwork]"),
    ("feature_view", "feature_service"),
    ("kind:", "kind: embedding_store\nkind:"),
    ("name:", "nam:"),
    ("timestamp:", "max_invalid_fraction: 2\n  timestamp:"),
    ("timestamp:", "max_invalid_fraction: 0.5\n  timestamp:"),
    ("action", "actoin"),
    (":", ": &x"),
    ("dim: 64", "dim: 0"),
    ("n: 20", "n: 2000"),
]


class CaseTimeout(BaseException):
    """Raised by the alarm: a BaseException, so no `except Exception` in the loader eats it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout after `seconds` of wall-clock time (SIGALRM; restores any prior alarm).

    pytest-timeout may own SIGALRM for the whole test: its handler and remaining time are put
    back afterwards.
    """

    def on_alarm(signum: int, frame: object) -> None:
        raise CaseTimeout(f"case took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    remaining, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if remaining:
            left = max(remaining - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


# --------------------------------------------------------------------------- mutations


def _lines(text: str) -> list[str]:
    return text.split("\n")


def delete_span(rng: random.Random, text: str) -> str:
    start = rng.randrange(len(text) + 1)
    return text[:start] + text[start + rng.choice([1, 1, 2, 5, 20, 200]) :]


def insert_characters(rng: random.Random, text: str) -> str:
    pool = rng.choice([SYNTAX, CONTROL, ODD, ["\x00"], [chr(rng.randrange(0x110000))]])
    insert = "".join(rng.choice(pool) for _ in range(rng.choice([1, 1, 2, 3, 8])))
    if 0xD800 <= ord(insert[-1]) <= 0xDFFF:  # a lone surrogate cannot be written as UTF-8
        insert = insert[:-1] + "\x00"
    at = rng.randrange(len(text) + 1)
    return text[:at] + insert + text[at:]


def duplicate_line(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[i])
    return "\n".join(lines)


def swap_lines(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def anchor_and_alias(rng: random.Random, text: str) -> str:
    """Anchor a value and refer to it elsewhere (possibly before it, or inside itself)."""
    lines = _lines(text)
    with_values = [i for i, line in enumerate(lines) if ": " in line]
    if not with_values:
        return text
    name = rng.choice(["a", "x", "lol", "user_id"])
    i = rng.choice(with_values)
    key, _, value = lines[i].partition(": ")
    lines[i] = f"{key}: &{name} {value}"
    j = rng.choice(with_values)
    key, _, _ = lines[j].partition(": ")
    lines[j] = f"{key}: *{name}"
    return "\n".join(lines)


def billion_laughs(rng: random.Random, text: str) -> str:
    """Aliases of aliases, `fanout ** levels` strong, used as a value somewhere."""
    levels, fanout = rng.randint(2, 10), rng.randint(2, 10)
    block = ["l0: &l0 [" + ", ".join(['"lol"'] * fanout) + "]"]
    for level in range(1, levels):
        block.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * fanout) + "]")
    lines = _lines(text)
    top = [i for i, line in enumerate(lines) if line[:1].isalpha() and ":" in line]
    at = rng.choice(top) if top else 0
    lines[at:at] = block
    targets = [i for i, line in enumerate(lines) if ": " in line and i >= at + levels]
    if targets:
        i = rng.choice(targets)
        key, _, _ = lines[i].partition(": ")
        lines[i] = f"{key}: *l{levels - 1}"
    return "\n".join(lines)


def deep_nesting(rng: random.Random, text: str) -> str:
    depth = rng.choice([10, 63, 64, 65, 200, 3_000])
    lines = _lines(text)
    with_values = [i for i, line in enumerate(lines) if ": " in line]
    if not with_values:
        return text
    i = rng.choice(with_values)
    key, _, value = lines[i].partition(": ")
    style = rng.randrange(3)
    if style == 0:
        lines[i] = f"{key}: {'[' * depth}{value}{']' * depth}"
    elif style == 1:
        lines[i] = f"{key}: {'{k: ' * depth}{value}{'}' * depth}"
    else:
        indent = len(key) - len(key.lstrip())
        nested = [f"{' ' * (indent + 1 + d)}k{d}:" for d in range(min(depth, 500))]
        lines[i : i + 1] = [f"{key}:", *nested[:-1], nested[-1] + f" {value}"]
    return "\n".join(lines)


def long_value(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    with_values = [i for i, line in enumerate(lines) if ": " in line]
    if not with_values:
        return text
    i = rng.choice(with_values)
    key, _, _ = lines[i].partition(": ")
    filler = rng.choice(["x", "ab ", "[", "9", "é"]) * rng.choice([100, 1_000, 100_000])
    lines[i] = f"{key}: {filler}"
    return "\n".join(lines)


def near_miss(rng: random.Random, text: str) -> str:
    old, new = rng.choice(TOKENS)
    spots = [i for i in range(len(text)) if text.startswith(old, i)]
    if not spots:
        return text
    at = rng.choice(spots)
    return text[:at] + new + text[at + len(old) :]


def new_document(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    lines.insert(rng.randrange(len(lines) + 1), rng.choice(["---", "...", "--- |", "%YAML 1.1"]))
    return "\n".join(lines)


MUTATIONS: list[Callable[[random.Random, str], str]] = [
    delete_span,
    insert_characters,
    insert_characters,
    duplicate_line,
    swap_lines,
    anchor_and_alias,
    billion_laughs,
    deep_nesting,
    long_value,
    near_miss,
    near_miss,
    new_document,
]


def to_bytes(rng: random.Random, text: str) -> bytes:
    """The file's bytes: UTF-8, sometimes with a byte that is not UTF-8 spliced in."""
    data = text.encode("utf-8")
    if rng.random() < 0.05:
        at = rng.randrange(len(data) + 1)
        data = data[:at] + bytes([rng.choice([0x80, 0xC3, 0xE9, 0xFF])]) + data[at:]
    return data


# --------------------------------------------------------------------------- the property


def check_case(case: int, root: Path) -> tuple[str, str]:
    """Build and load case `case`; returns (what was done, outcome) or raises AssertionError."""
    rng = random.Random(f"{SEED}:{case}")
    directory = root / f"case{case}"
    directory.mkdir(parents=True)
    files = {p.name: p.read_text(encoding="utf-8") for p in DEMO}
    done: list[str] = []
    for name in rng.sample(sorted(files), rng.choice([1, 1, 1, 2])):
        text = files[name]
        for mutation in rng.choices(MUTATIONS, k=rng.choice([1, 1, 2, 3, 4])):
            text = mutation(rng, text)
            done.append(f"{name}:{mutation.__name__}")
        files[name] = text
    written: dict[str, int] = {}
    for name, text in files.items():
        data = to_bytes(rng, text) if any(d.startswith(f"{name}:") for d in done) else None
        path = directory / name
        path.write_bytes(data if data is not None else text.encode("utf-8"))
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
        written[str(path)] = len(lines)
    written[str(directory)] = 1
    what = ", ".join(done)
    try:
        with time_limit(CASE_SECONDS):
            FeatureCatalog.from_yaml_dir(directory)
    except CatalogErrors as exc:
        assert exc.errors, f"case {case} ({what}): CatalogErrors without errors"
        for error in exc.errors:
            where = f"case {case} ({what}): {str(error)[:300]}"
            assert error.file in written, where
            assert error.line >= 1 and error.column >= 1, where
            assert error.line <= written[error.file] + 1, where
            assert 0 < len(error.message) <= MESSAGE_LIMIT, where
            assert error.hint is None or len(error.hint) <= MESSAGE_LIMIT, where
            assert "internal error" not in error.message, where
        outcome = "errors"
    except CaseTimeout:
        raise AssertionError(f"case {case} ({what}): no answer within {CASE_SECONDS} s") from None
    except Exception as exc:
        raise AssertionError(
            f"case {case} ({what}): {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    else:
        outcome = "valid"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return what, outcome


def test_mutated_catalogs_load_or_fail_with_located_bounded_errors(tmp_path: Path) -> None:
    assert len(DEMO) >= 3, DEMO
    failures: list[str] = []
    outcomes = {"valid": 0, "errors": 0}
    for case in range(CASES):
        try:
            _, outcome = check_case(case, tmp_path)
        except AssertionError as exc:
            failures.append(str(exc))
            if len(failures) >= 10:
                break
            continue
        outcomes[outcome] += 1
    assert not failures, f"seed {SEED}: {len(failures)} failing cases:\n" + "\n".join(failures)
    # The mutations must exercise both outcomes, or the test checks less than it seems to.
    assert outcomes["errors"] > CASES // 2, outcomes
    assert outcomes["valid"] > 0, outcomes


@pytest.mark.parametrize("case", [0, 1, 2])
def test_a_case_is_reproducible_from_its_seed(tmp_path: Path, case: int) -> None:
    first = check_case(case, tmp_path / "a")
    second = check_case(case, tmp_path / "b")
    assert first == second
