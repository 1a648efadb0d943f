"""`_stable_order`: the lexicographic order of int64 columns, ties by row position."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from daedalus.pit.compute import _argsort, _primary_order, _stable_order, _stable_order_runs

INT64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def columns(draw: st.DrawFn) -> list[np.ndarray]:
    n = draw(st.integers(0, 40))
    width = draw(st.integers(1, 4))
    out = []
    for _ in range(width):
        # Few distinct values (ties), scaled to any magnitude (packing may or may not fit).
        small = draw(hnp.arrays(np.int64, n, elements=st.integers(-3, 3)))
        scale = draw(st.sampled_from([1, 2**20, 2**40, 2**60]))
        out.append(small * np.int64(scale) if scale < 2**61 else small)
    if draw(st.booleans()):  # sometimes a column spanning the whole int64 range
        out[0] = draw(hnp.arrays(np.int64, n, elements=INT64))
    if width > 1 and draw(st.booleans()):
        # Often the second column is in row order already (times of an append-only log):
        # the sort then orders by the first column alone.
        out[1] = np.sort(out[1])
    return out


@given(columns())
def test_equals_a_lexsort_with_row_position_last(cols: list[np.ndarray]) -> None:
    n = len(cols[0])
    expected = np.lexsort([np.arange(n), *reversed(cols)]) if n else np.zeros(0, np.int64)
    assert np.array_equal(_stable_order(cols), expected)


@given(columns())
def test_runs_hold_every_row_equal_to_another_in_every_column(cols: list[np.ndarray]) -> None:
    """The tied runs are what the as-of tie count searches: no fully equal row may be missing,
    rows in one run share the sort's key, and `rows` lists them in the sorted order."""
    perm, (rows, run) = _stable_order_runs(cols)
    n = len(cols[0])
    table = np.stack(cols, axis=1) if n else np.zeros((0, len(cols)), np.int64)
    duplicated = {i for i in range(n) for j in range(n) if i != j and (table[i] == table[j]).all()}
    assert duplicated <= set(rows.tolist())
    assert len(rows) == len(run) and np.all(np.diff(run) >= 0)
    position = np.empty(n, np.int64)
    position[perm] = np.arange(n)
    assert np.all(np.diff(position[rows]) > 0)
    for r in np.unique(run):  # rows of one run are equal in the first column at least
        assert len(set(cols[0][rows[run == r]].tolist())) == 1


@given(
    hnp.arrays(
        np.int64,
        st.integers(0, 60),
        elements=st.one_of(st.integers(-5, 5), INT64, st.integers(2**57, 2**57 + 3)),
    )
)
def test_argsort_is_a_stable_sort_and_returns_the_sorted_values(values: np.ndarray) -> None:
    """Both paths: packed with positions (range and positions fit in 64 bits) or indirect."""
    perm, ordered, stable = _argsort(values)
    expected = np.argsort(values, kind="stable")
    if stable:  # the flag is only set when ties are in position order
        assert np.array_equal(perm, expected)
    assert np.array_equal(values[perm], values[expected])
    assert np.array_equal(ordered, values[expected])
    assert sorted(perm.tolist()) == list(range(len(values)))
    if len(values) and (int(values.max()) - int(values.min())).bit_length() + 6 <= 64:
        assert np.array_equal(perm, expected)  # the packed path is stable


@given(columns(), st.data())
def test_a_shared_primary_sort_gives_the_same_order_and_is_left_as_it_was(
    cols: list[np.ndarray], data: st.DataObject
) -> None:
    """Ranks of several value columns share the sort by their first two columns (key, ts)."""
    if len(cols) < 2:
        cols = [*cols, np.zeros(len(cols[0]), np.int64)]
    n = len(cols[0])
    other = [*cols[:2], data.draw(hnp.arrays(np.int64, n, elements=st.integers(-3, 3)))]
    primary = _primary_order(other)
    kept = [a.copy() for a in primary[:2]]
    perm, _ = _stable_order_runs(cols, primary)
    expected = np.lexsort([np.arange(n), *reversed(cols)]) if n else np.zeros(0, np.int64)
    assert np.array_equal(perm, expected)
    assert all(np.array_equal(a, b) for a, b in zip(primary[:2], kept, strict=True))
