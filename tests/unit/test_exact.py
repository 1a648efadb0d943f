"""Property and edge-case tests for the exact limb kernel, against exact Fraction references."""

from __future__ import annotations

import math
import os
import struct
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from daedalus.pit.exact import (
    MAX_SUM_ROWS,
    BandedEncoding,
    LimbEncoding,
    add_limb_sums,
    encode_float_bands,
    encode_float_limbs,
    encode_float_square_bands,
    encode_float_square_limbs,
    encode_int_limbs,
    exact_sample_variance,
    float_from_order_key,
    float_order_key,
    relimb,
    round_limb_sums,
    round_limb_sums_to_int,
    sum_limb_bits,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_FLOAT = float.fromhex("0x1.fffffffffffffp+1023")
MIN_SUB = 5e-324
MIN_NORMAL = 2.2250738585072014e-308

# Keeps the default suite fast (a few seconds); set DAEDALUS_EXACT_EXAMPLES=5000 for a deep fuzz.
FAST = settings(
    max_examples=int(os.environ.get("DAEDALUS_EXACT_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ----------------------------------------------------------------------------- references


def bits(v: float) -> int:
    """The IEEE bit pattern, so 0.0 != -0.0 and results compare exactly."""
    return struct.unpack("<q", struct.pack("<d", v))[0]


def ref_round(value: Fraction) -> float:
    """Correctly rounded (ties to even) float64 of an exact rational, written independently of
    the kernel: ±inf at >= 2**1024 - 2**970, +0.0 for exact zero, -0.0 for negative underflow."""
    if value == 0:
        return 0.0
    sign = -1.0 if value < 0 else 1.0
    num, den = abs(value.numerator), value.denominator
    e = num.bit_length() - den.bit_length()  # 2**e <= |value| < 2**(e+1), after the fix below
    if (num << max(-e, 0)) < (den << max(e, 0)):
        e -= 1
    lsb = max(e - 52, -1074)
    # q = |value| / 2**lsb split into integer part and remainder
    if lsb >= 0:
        q, rem = divmod(num, den << lsb)
        half_cmp = 2 * rem - (den << lsb)
    else:
        q, rem = divmod(num << -lsb, den)
        half_cmp = 2 * rem - den
    if half_cmp > 0 or (half_cmp == 0 and q & 1):
        q += 1
    if q * Fraction(2) ** lsb >= 2**1024:
        return sign * math.inf
    return sign * math.ldexp(q, lsb)


def limbs_row_value(row: np.ndarray, base_exp: int) -> Fraction:
    total = sum(int(v) << (32 * k) for k, v in enumerate(row.tolist()))
    return Fraction(total) * Fraction(2) ** base_exp


def assert_same_bits(got: np.ndarray, want: list[float]) -> None:
    got_list = got.tolist()
    assert len(got_list) == len(want)
    for i, (g, w) in enumerate(zip(got_list, want, strict=True)):
        assert bits(g) == bits(w), f"row {i}: got {g!r} ({g.hex()}), want {w!r} ({w.hex()})"


def float_sums(xs: list[float], masks: list[list[bool]]) -> np.ndarray:
    enc = encode_float_limbs(np.array(xs, dtype=np.float64))
    sel = np.array(masks, dtype=np.int64).reshape(len(masks), len(xs))
    # Exact integer matmul == column sums over each subset (int64, far from overflow here).
    return round_limb_sums(sel @ enc.limbs, enc.base_exp)


# ----------------------------------------------------------------------------- strategies

SPECIALS = [
    0.0,
    -0.0,
    MIN_SUB,
    -MIN_SUB,
    MIN_NORMAL,
    -MIN_NORMAL,
    MIN_NORMAL - MIN_SUB,
    MAX_FLOAT,
    -MAX_FLOAT,
    1e308,
    -1e308,
    1e-300,
    -1e-300,
    1e300,
    1.0,
    -1.0,
    0.1,
    2.0**-53,
    1.0 + 2.0**-52,
    2.0**970,
]

finite_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(SPECIALS),
    st.floats(min_value=-1e-305, max_value=1e-305, allow_nan=False),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.integers(-(2**53), 2**53).map(float),
)


@st.composite
def floats_and_masks(draw: st.DrawFn, max_size: int = 24) -> tuple[list[float], list[list[bool]]]:
    xs = draw(st.lists(finite_floats, max_size=max_size))
    n = len(xs)
    masks = draw(st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=1, max_size=4))
    # Contiguous windows too: the shape rolling aggregates actually use.
    for _ in range(draw(st.integers(0, 3))):
        lo = draw(st.integers(0, n))
        hi = draw(st.integers(lo, n))
        masks.append([lo <= i < hi for i in range(n)])
    return xs, masks


# ----------------------------------------------------------------------------- order keys


def total_order_ref(v: float) -> tuple[int, float]:
    return (0, -abs(v)) if math.copysign(1.0, v) < 0 else (1, v)


@FAST
@given(st.lists(st.floats(allow_nan=False), max_size=40))
def test_order_key_roundtrip_and_monotone(xs: list[float]) -> None:
    a = np.array(xs, dtype=np.float64)
    keys = float_order_key(a)
    assert keys.dtype == np.int64
    back = float_from_order_key(keys)
    assert back.dtype == np.float64
    assert back.view(np.int64).tolist() == a.view(np.int64).tolist()
    by_ref = sorted(xs, key=total_order_ref)
    by_key = float_from_order_key(np.sort(keys)).tolist()
    assert [bits(v) for v in by_key] == [bits(v) for v in by_ref]
    for x, y, kx, ky in zip(xs, xs[1:], keys.tolist(), keys.tolist()[1:], strict=False):
        rx, ry = total_order_ref(x), total_order_ref(y)
        assert (kx < ky) == (rx < ry) and (kx == ky) == (bits(x) == bits(y))


def test_order_key_special_values_strictly_increasing() -> None:
    ordered = [
        -math.inf,
        -MAX_FLOAT,
        -1.0,
        -MIN_NORMAL,
        -MIN_SUB,
        -0.0,
        0.0,
        MIN_SUB,
        1.0,
        math.inf,
    ]
    keys = float_order_key(np.array(ordered)).tolist()
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert keys[5] == -1 and keys[6] == 0


def test_order_key_rejects_integers() -> None:
    with pytest.raises(TypeError):
        float_order_key(np.arange(3))
    with pytest.raises(TypeError):
        float_from_order_key(np.zeros(3))


# ----------------------------------------------------------------------------- float limbs


def check_invariant(enc: LimbEncoding, exact: list[Fraction]) -> None:
    limbs = enc.limbs
    assert limbs.dtype == np.int64 and limbs.ndim == 2 and limbs.shape[1] >= 1
    assert limbs.shape[0] == len(exact)
    assert int(np.abs(limbs).max(initial=0)) < 2**32
    for row, want in zip(limbs, exact, strict=True):
        assert limbs_row_value(row, enc.base_exp) == want
        assert (row >= 0).all() or (row <= 0).all()


@FAST
@given(st.lists(finite_floats, max_size=30))
def test_float_limbs_are_exact(xs: list[float]) -> None:
    enc = encode_float_limbs(np.array(xs, dtype=np.float64))
    check_invariant(enc, [Fraction(x) for x in xs])


@FAST
@given(floats_and_masks())
def test_subset_sums_correctly_rounded(case: tuple[list[float], list[list[bool]]]) -> None:
    xs, masks = case
    want = [
        ref_round(sum((Fraction(x) for x, m in zip(xs, mk, strict=True) if m), Fraction(0)))
        for mk in masks
    ]
    assert_same_bits(float_sums(xs, masks), want)


@FAST
@given(hnp.arrays(np.float64, st.integers(0, 64), elements=st.floats(-1e6, 1e6)))
def test_window_sums_via_prefix_differences(a: np.ndarray) -> None:
    # Engines may compute window sums as prefix-sum differences; integer sums make that exact.
    enc = encode_float_limbs(a)
    prefix = np.vstack([np.zeros((1, enc.n_limbs), np.int64), np.cumsum(enc.limbs, axis=0)])
    w = 5
    lo = np.maximum(np.arange(a.size) - w + 1, 0)
    got = round_limb_sums(prefix[np.arange(a.size) + 1] - prefix[lo], enc.base_exp)
    want = [
        ref_round(sum(map(Fraction, a[lo[i] : i + 1].tolist()), Fraction(0))) for i in range(a.size)
    ]
    assert_same_bits(got, want)


@FAST
@given(
    st.lists(
        st.lists(
            st.one_of(st.integers(INT64_MIN, INT64_MAX), st.integers(-8, 8)), min_size=1, max_size=5
        ),
        min_size=1,
        max_size=6,
    ).filter(lambda rows: len({len(r) for r in rows}) == 1),
    st.integers(-1250, 1000),
)
def test_round_arbitrary_int64_sums(rows: list[list[int]], base_exp: int) -> None:
    # Unnormalised, mixed-sign, extreme int64 limbs: carries, negation, subnormals, overflow.
    sums = np.array(rows, dtype=np.int64)
    want = [ref_round(limbs_row_value(r, base_exp)) for r in sums]
    assert_same_bits(round_limb_sums(sums, base_exp), want)


def test_encode_rejects_non_finite() -> None:
    with pytest.raises(ValueError, match="NaN"):
        encode_float_limbs(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="1 infinite"):
        encode_float_limbs(np.array([1.0, -np.inf]))
    with pytest.raises(ValueError, match="NaN"):
        encode_float_square_limbs(np.array([np.nan]))
    with pytest.raises(TypeError):
        encode_float_limbs(np.arange(3))
    with pytest.raises(ValueError, match="1-D"):
        encode_float_limbs(np.zeros((2, 2)))


def test_empty_input_and_empty_subset_give_positive_zero() -> None:
    enc = encode_float_limbs(np.zeros(0))
    assert enc.limbs.shape == (0, 1) and enc.base_exp == 0
    out = round_limb_sums(enc.limbs.sum(axis=0, keepdims=True), enc.base_exp)
    assert bits(out[0]) == bits(0.0)
    enc = encode_float_limbs(np.array([1.5, -2.0]))
    empty = enc.limbs[np.zeros(2, dtype=bool)].sum(axis=0, keepdims=True)
    assert bits(round_limb_sums(empty, enc.base_exp)[0]) == bits(0.0)
    assert round_limb_sums(np.zeros((0, 3), np.int64), 0).shape == (0,)


def test_negative_zero_inputs_sum_to_positive_zero() -> None:
    enc = encode_float_limbs(np.array([-0.0, -0.0, 0.0]))
    assert not enc.limbs.any()
    out = round_limb_sums(enc.limbs, enc.base_exp)
    assert [bits(v) for v in out.tolist()] == [0, 0, 0]
    total = round_limb_sums(enc.limbs[:2].sum(axis=0, keepdims=True), enc.base_exp)
    assert bits(total[0]) == 0
    # Exact cancellation is an exact zero too, never -0.0.
    assert bits(float_sums([-1.5, 1.5], [[True, True]])[0]) == 0


def test_subnormal_inputs_and_results() -> None:
    xs = [MIN_SUB, -MIN_SUB, 3 * MIN_SUB, MIN_NORMAL, -MIN_SUB, 1e-310]
    enc = encode_float_limbs(np.array(xs))
    assert enc.base_exp == -1074
    got = round_limb_sums(enc.limbs, enc.base_exp)
    assert [bits(v) for v in got.tolist()] == [bits(x) for x in xs]
    # MIN_NORMAL - MIN_SUB is the largest subnormal
    assert float_sums([MIN_NORMAL, -MIN_SUB], [[True, True]])[0] == MIN_NORMAL - MIN_SUB
    # Directly rounding into the subnormal range: 1.5 ulp ties to 2 ulp, 0.5 ulp ties to +0.0,
    # and a negative half ulp gives -0.0 (IEEE), 0.75 ulp rounds up to 1 ulp.
    assert bits(round_limb_sums(np.array([[3]]), -1075)[0]) == bits(2 * MIN_SUB)
    assert bits(round_limb_sums(np.array([[1]]), -1075)[0]) == bits(0.0)
    assert bits(round_limb_sums(np.array([[-1]]), -1075)[0]) == bits(-0.0)
    assert bits(round_limb_sums(np.array([[3]]), -1076)[0]) == bits(MIN_SUB)
    assert bits(round_limb_sums(np.array([[5]]), -1075)[0]) == bits(2 * MIN_SUB)  # 2.5 -> 2


def test_overflow_to_infinity() -> None:
    half_ulp = 2.0**970  # half an ulp of MAX_FLOAT
    cases = [
        ([MAX_FLOAT, MAX_FLOAT], math.inf),
        ([-MAX_FLOAT, -MAX_FLOAT], -math.inf),
        ([MAX_FLOAT, half_ulp], math.inf),  # exact tie at 2**1024 - 2**970 rounds to inf
        ([MAX_FLOAT, half_ulp, -MIN_SUB], MAX_FLOAT),  # just below the tie
        ([MAX_FLOAT, 2.0**969], MAX_FLOAT),
        ([MAX_FLOAT, MAX_FLOAT, -MAX_FLOAT], MAX_FLOAT),  # intermediate overflow cancels
        ([1e308, -1e308, 1e-300], 1e-300),
    ]
    for xs, want in cases:
        got = float_sums(xs, [[True] * len(xs)])[0]
        assert bits(got) == bits(want), (xs, got)
    assert round_limb_sums(np.array([[1, 0]]), 1000)[0] == 2.0**1000
    assert round_limb_sums(np.array([[0, 1]]), 1000)[0] == math.inf
    assert round_limb_sums(np.array([[-1]]), 5000)[0] == -math.inf


def test_ties_round_half_to_even() -> None:
    one_ulp = 2.0**-52
    cases = [
        ([1.0, 2.0**-53], 1.0),  # tie, 1.0 is even
        ([1.0 + one_ulp, 2.0**-53], 1.0 + 2 * one_ulp),  # tie, rounds up to even
        ([1.0, 2.0**-53, MIN_SUB], 1.0 + one_ulp),  # just above the tie
        ([1.0, 2.0**-53, -MIN_SUB], 1.0),  # just below the tie
        ([2.0**53, 1.0], 2.0**53),
        ([2.0**53, 3.0], 2.0**53 + 4),
        ([-(2.0**53), -1.0], -(2.0**53)),
    ]
    for xs, want in cases:
        got = float_sums(xs, [[True] * len(xs)])[0]
        assert bits(got) == bits(want), (xs, got)


def test_huge_magnitude_span() -> None:
    xs = [1e-300, 1e300, -1e300, 5e-324, 3.0]
    enc = encode_float_limbs(np.array(xs))
    assert enc.n_limbs > 60
    check_invariant(enc, [Fraction(x) for x in xs])
    got = round_limb_sums(enc.limbs.sum(axis=0, keepdims=True), enc.base_exp)[0]
    assert bits(got) == bits(ref_round(sum(map(Fraction, xs), Fraction(0))))


def test_base_exp_is_the_lowest_set_bit() -> None:
    # 1000 = 125 * 2**3 is the lowest; integer-valued data needs no fractional limbs.
    enc = encode_float_limbs(np.array([1000.0, 2048.0, -3.0e6]))
    assert enc.base_exp == 3 and enc.n_limbs == 1
    assert enc.limbs[:, 0].tolist() == [125, 256, -375000]
    assert MAX_SUM_ROWS * (2**32 - 1) < 2**63


# ----------------------------------------------------------------------------- squares


@FAST
@given(floats_and_masks(max_size=16))
def test_square_limbs_exact_and_sums_rounded(case: tuple[list[float], list[list[bool]]]) -> None:
    xs, masks = case
    enc = encode_float_square_limbs(np.array(xs, dtype=np.float64))
    check_invariant(enc, [Fraction(x) ** 2 for x in xs])
    assert (enc.limbs >= 0).all()
    if xs:
        assert enc.base_exp == 2 * encode_float_limbs(np.array(xs)).base_exp
    sel = np.array(masks, dtype=np.int64).reshape(len(masks), len(xs))
    got = round_limb_sums(sel @ enc.limbs, enc.base_exp)
    want = [
        ref_round(sum((Fraction(x) ** 2 for x, m in zip(xs, mk, strict=True) if m), Fraction(0)))
        for mk in masks
    ]
    assert_same_bits(got, want)


# ----------------------------------------------------------------------------- integers


@FAST
@given(
    st.lists(
        st.one_of(
            st.integers(INT64_MIN, INT64_MAX), st.sampled_from([INT64_MIN, INT64_MAX, -1, 0, 1])
        ),
        max_size=20,
    ),
    st.data(),
)
def test_int_limb_sums_match_python(xs: list[int], data: st.DataObject) -> None:
    enc = encode_int_limbs(np.array(xs, dtype=np.int64))
    assert enc.base_exp == 0 and enc.limbs.shape == (len(xs), 2)
    check_invariant(enc, [Fraction(x) for x in xs])
    masks = data.draw(
        st.lists(
            st.lists(st.booleans(), min_size=len(xs), max_size=len(xs)), min_size=1, max_size=4
        )
    )
    sel = np.array(masks, dtype=np.int64).reshape(len(masks), len(xs))
    values, overflow = round_limb_sums_to_int(sel @ enc.limbs)
    for mk, v, o in zip(masks, values.tolist(), overflow.tolist(), strict=True):
        want = sum(x for x, m in zip(xs, mk, strict=True) if m)
        fits = INT64_MIN <= want <= INT64_MAX
        assert o == (not fits)
        assert v == (want if fits else 0)


def test_int64_min_edge_cases() -> None:
    enc = encode_int_limbs(np.array([INT64_MIN, INT64_MAX, -1, 1], dtype=np.int64))
    assert enc.limbs[0].tolist() == [0, -(2**31)]
    assert enc.limbs[1].tolist() == [2**32 - 1, 2**31 - 1]
    values, overflow = round_limb_sums_to_int(enc.limbs)
    assert values.tolist() == [INT64_MIN, INT64_MAX, -1, 1] and not overflow.any()
    pick = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=np.int64)
    values, overflow = round_limb_sums_to_int(pick @ enc.limbs)
    assert overflow.tolist() == [True, True, False, False]
    assert values.tolist() == [0, 0, -1, INT64_MIN]
    assert round_limb_sums(enc.limbs[:1], 0)[0] == -(2.0**63)


def test_int_decoding_scales_and_rejects_fractions() -> None:
    values, overflow = round_limb_sums_to_int(np.array([[3, 1], [-1, 0], [1, 0]]), base_exp=2)
    assert values.tolist() == [(3 + 2**32) * 4, -4, 4] and not overflow.any()
    values, overflow = round_limb_sums_to_int(np.array([[1, 0], [-1, 0]]), base_exp=63)
    assert values.tolist() == [0, INT64_MIN] and overflow.tolist() == [True, False]
    values, _ = round_limb_sums_to_int(np.array([[8, 0], [-12, 0]]), base_exp=-2)
    assert values.tolist() == [2, -3]
    with pytest.raises(ValueError, match="not integers"):
        round_limb_sums_to_int(np.array([[8, 0], [3, 0]]), base_exp=-2)
    enc = encode_int_limbs(np.array([np.iinfo(np.uint64).max], dtype=np.uint64))
    values, overflow = round_limb_sums_to_int(enc.limbs)
    assert overflow.tolist() == [True]


def test_bad_sums_shape_and_dtype() -> None:
    with pytest.raises(ValueError, match="2-D"):
        round_limb_sums(np.zeros(3, np.int64), 0)
    with pytest.raises(TypeError):
        round_limb_sums(np.zeros((1, 3)), 0)
    with pytest.raises(ValueError, match="limb_bits"):
        round_limb_sums(np.zeros((1, 3), np.int64), 0, limb_bits=16)


# ----------------------------------------------------------------------------- variance


def ref_variance(xs: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return math.nan
    s1 = sum(map(Fraction, xs), Fraction(0))
    s2 = sum((Fraction(x) ** 2 for x in xs), Fraction(0))
    return ref_round((n * s2 - s1 * s1) / (n * (n - 1)))


@FAST
@given(floats_and_masks(max_size=12))
def test_variance_matches_fraction_formula(case: tuple[list[float], list[list[bool]]]) -> None:
    xs, masks = case
    a = np.array(xs, dtype=np.float64)
    e1, e2 = encode_float_limbs(a), encode_float_square_limbs(a)
    sel = np.array(masks, dtype=np.int64).reshape(len(masks), len(xs))
    got = exact_sample_variance(
        sel.sum(axis=1), sel @ e1.limbs, e1.base_exp, sel @ e2.limbs, e2.base_exp
    )
    for row, mk in zip(got.tolist(), masks, strict=True):
        want = ref_variance([x for x, m in zip(xs, mk, strict=True) if m])
        if math.isnan(want):
            assert math.isnan(row)
        else:
            assert bits(row) == bits(want), (xs, mk, row, want)


def test_variance_edge_cases() -> None:
    a = np.array([1.0, 2.0, 4.0, MAX_FLOAT, -MAX_FLOAT, 5.0, 5.0])
    e1, e2 = encode_float_limbs(a), encode_float_square_limbs(a)
    sel = np.array(
        [
            [1, 1, 1, 0, 0, 0, 0],  # var(1, 2, 4) = 7/3
            [0, 0, 0, 1, 1, 0, 0],  # overflows to +inf
            [0, 0, 0, 0, 0, 1, 1],  # exactly zero -> +0.0
            [1, 0, 0, 0, 0, 0, 0],  # n = 1 -> NaN (null)
            [0, 0, 0, 0, 0, 0, 0],  # n = 0 -> NaN (null)
        ],
        dtype=np.int64,
    )
    got = exact_sample_variance(
        sel.sum(axis=1), sel @ e1.limbs, e1.base_exp, sel @ e2.limbs, e2.base_exp
    )
    assert bits(got[0]) == bits(7 / 3)
    assert got[1] == math.inf
    assert bits(got[2]) == 0
    assert math.isnan(got[3]) and math.isnan(got[4])
    with pytest.raises(ValueError, match="inconsistent"):
        exact_sample_variance(np.array([2]), np.array([[4]]), 0, np.array([[1]]), 0)
    with pytest.raises(ValueError, match="row counts"):
        exact_sample_variance(np.array([2, 2]), np.array([[4]]), 0, np.array([[1]]), 0)


def test_the_blocked_float_encoder_equals_the_integer_one_across_blocks() -> None:
    """More rows than one scratch block (and a partial last block): the same limbs and base
    as the integer mantissa-shift encoder, for decimal-like, signed and tiny values."""
    from daedalus.pit.exact import _BLOCK, _encode_float_limbs_wide

    rng = np.random.default_rng(11)
    n = 2 * _BLOCK + 12_345
    for values in (
        np.round(rng.lognormal(8.5, 1.0, n), 3),
        rng.normal(size=n) * 1e-5,
        np.where(rng.random(n) < 0.5, -1.0, 1.0) * rng.integers(0, 2**53, n),
    ):
        fast = encode_float_limbs(values)
        wide = _encode_float_limbs_wide(values)
        assert fast.base_exp == wide.base_exp
        assert np.array_equal(fast.limbs, wide.limbs)


# ----------------------------------------------------------------------------- wide limbs

LIMB_WIDTHS = st.sampled_from([32, 33, 39, 45, 47, 52])


@FAST
@given(st.lists(finite_floats, max_size=30), LIMB_WIDTHS)
def test_wide_float_limbs_are_exact(xs: list[float], width: int) -> None:
    enc = encode_float_limbs(np.array(xs, dtype=np.float64), width)
    b = enc.limb_bits  # spans beyond 1000 bits fall back to 32-bit limbs
    assert b in (width, 32)
    assert int(np.abs(enc.limbs).max(initial=0)) < 2**b
    for row, x in zip(enc.limbs, xs, strict=True):
        value = sum(int(v) << (b * k) for k, v in enumerate(row.tolist()))
        assert Fraction(value) * Fraction(2) ** enc.base_exp == Fraction(x)
        assert (row >= 0).all() or (row <= 0).all()


def test_wider_limbs_mean_fewer_columns() -> None:
    # A 67-bit span (the benchmark's dwell times): 3 limbs of 32 bits, 2 of 39.
    x = np.array([1021.237, 33963.158, 2.0**-47, 2.0**19 + 0.5])
    assert encode_float_limbs(x).n_limbs == 3
    assert encode_float_limbs(x, 39).n_limbs == 2


@FAST
@given(
    st.lists(
        st.lists(st.one_of(st.integers(INT64_MIN, INT64_MAX), st.integers(-8, 8)), min_size=4),
        min_size=1,
        max_size=5,
    ).map(lambda rows: [r[: min(map(len, rows))][:5] for r in rows]),
    st.sampled_from([33, 39, 40, 47, 52]),
)
def test_relimb_keeps_the_integer_and_bounds_every_digit(rows: list[list[int]], b: int) -> None:
    sums = np.array(rows, dtype=np.int64)
    out = relimb(sums, b)
    assert out.dtype == np.int64 and int(np.abs(out).max()) < 2**36
    for wide, narrow in zip(sums, out, strict=True):
        want = sum(int(v) << (b * k) for k, v in enumerate(wide.tolist()))
        assert limbs_row_value(narrow, 0) == want


@FAST
@given(floats_and_masks(), LIMB_WIDTHS)
def test_subset_sums_of_wide_limbs_correctly_rounded(
    case: tuple[list[float], list[list[bool]]], width: int
) -> None:
    xs, masks = case
    enc = encode_float_limbs(np.array(xs, dtype=np.float64), width)
    sel = np.array(masks, dtype=np.int64).reshape(len(masks), len(xs))
    got = round_limb_sums(relimb(sel @ enc.limbs, enc.limb_bits), enc.base_exp)
    want = [
        ref_round(sum((Fraction(x) for x, m in zip(xs, mk, strict=True) if m), Fraction(0)))
        for mk in masks
    ]
    assert_same_bits(got, want)


@pytest.mark.parametrize("rows", [0, 1, 2, 1000, 2047, 2048, 10_000_000, 2**31 - 1, 2**31])
def test_sum_limb_bits_keeps_every_sum_inside_int64(rows: int) -> None:
    b = sum_limb_bits(rows)
    assert 32 <= b <= 52
    assert rows * (2**b - 1) < 2**63  # up to MAX_SUM_ROWS, where 32-bit limbs take over
    assert b >= 51 or rows * (2 ** (b + 2) - 1) >= 2**63  # at most a bit narrower than fits


def test_sum_limb_bits_for_the_benchmark_size_and_bad_widths() -> None:
    assert sum_limb_bits(10_000_000) == 39
    with pytest.raises(ValueError, match="limb_bits"):
        encode_float_limbs(np.ones(2), 53)
    with pytest.raises(ValueError, match="limb_bits"):
        relimb(np.ones((1, 1), np.int64), 60)


# ----------------------------------------------------------------------------- bands

# Outlier-heavy columns: a bulk of decimal-like values (one narrow band, like measured data)
# with values anywhere in the double range, many or few, subnormals and signed zeros.
bulk_values = st.floats(min_value=100.0, max_value=1e5).map(lambda v: round(v, 3))
extreme_values = st.one_of(
    st.sampled_from(SPECIALS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-MIN_NORMAL, max_value=MIN_NORMAL),
)


@st.composite
def outlier_columns(draw: st.DrawFn, max_size: int = 40) -> list[float]:
    n = draw(st.integers(0, max_size))
    share = draw(st.sampled_from([0, 5, 20, 50, 100]))
    return [
        draw(extreme_values if draw(st.integers(0, 99)) < share else bulk_values)
        * draw(st.sampled_from([1.0, -1.0]))
        for _ in range(n)
    ]


@st.composite
def outliers_and_masks(draw: st.DrawFn) -> tuple[list[float], list[list[bool]]]:
    xs = draw(outlier_columns())
    n = len(xs)
    masks = draw(st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=1, max_size=3))
    for _ in range(draw(st.integers(0, 3))):
        lo = draw(st.integers(0, n))
        hi = draw(st.integers(lo, n))
        masks.append([lo <= i < hi for i in range(n)])
    return xs, masks


def band_values(banded: BandedEncoding, n: int) -> list[Fraction]:
    """Each row's value from a banded encoding, checking its structure on the way."""
    dense = banded.dense
    assert dense.limbs.shape[0] == n
    values = [limbs_row_value_bits(row, dense.base_exp, dense.limb_bits) for row in dense.limbs]
    seen: set[int] = set()
    for band in banded.sparse:
        rows = band.rows.tolist()
        assert rows == sorted(rows) and len(rows) == band.encoding.limbs.shape[0] > 0
        assert not seen & set(rows)  # every row in one band at most
        seen |= set(rows)
        enc = band.encoding
        assert int(np.abs(enc.limbs).max(initial=0)) < 2**enc.limb_bits
        for i, row in zip(rows, enc.limbs, strict=True):
            assert not dense.limbs[i].any()  # a sparse row is zero in the dense band
            assert (row >= 0).all() or (row <= 0).all()
            values[i] += limbs_row_value_bits(row, enc.base_exp, enc.limb_bits)
    assert banded.outlier_rows.tolist() == sorted(seen)
    return values


def limbs_row_value_bits(row: np.ndarray, base_exp: int, limb_bits: int) -> Fraction:
    total = sum(int(v) << (limb_bits * k) for k, v in enumerate(row.tolist()))
    return Fraction(total) * Fraction(2) ** base_exp


def banded_subset_sums(banded: BandedEncoding, sel: np.ndarray) -> tuple[np.ndarray, int]:
    """Exact subset sums as an engine would give them: dense limb sums plus each band's."""
    dense = banded.dense
    parts = [(sel @ dense.limbs, dense.base_exp, dense.limb_bits)]
    for band in banded.sparse:
        enc = band.encoding
        parts.append((sel[:, band.rows] @ enc.limbs, enc.base_exp, enc.limb_bits))
    return add_limb_sums(parts)


@FAST
@given(outlier_columns(), LIMB_WIDTHS, st.integers(1, 4))
def test_float_bands_are_exact(xs: list[float], width: int, max_limbs: int) -> None:
    banded = encode_float_bands(np.array(xs, dtype=np.float64), width, max_limbs=max_limbs)
    assert band_values(banded, len(xs)) == [Fraction(x) for x in xs]
    if banded.sparse:  # split: the dense band within the limit, each sparse band too or one
        assert banded.dense.n_limbs <= max_limbs
    else:  # not split: exactly the plain encoding
        plain = encode_float_limbs(np.array(xs, dtype=np.float64), width)
        assert plain.base_exp == banded.dense.base_exp
        assert np.array_equal(plain.limbs, banded.dense.limbs)


@FAST
@given(outlier_columns(max_size=24), st.integers(1, 7))
def test_square_bands_are_exact(xs: list[float], max_limbs: int) -> None:
    banded = encode_float_square_bands(np.array(xs, dtype=np.float64), max_limbs=max_limbs)
    assert band_values(banded, len(xs)) == [Fraction(x) ** 2 for x in xs]
    assert banded.dense.limb_bits == 32 and all(b.encoding.limb_bits == 32 for b in banded.sparse)
    if banded.sparse:
        assert banded.dense.n_limbs <= max_limbs


@FAST
@given(outliers_and_masks(), LIMB_WIDTHS)
def test_banded_subset_sums_correctly_rounded(
    case: tuple[list[float], list[list[bool]]], width: int
) -> None:
    xs, masks = case
    banded = encode_float_bands(np.array(xs, dtype=np.float64), width)
    sel = np.array(masks, dtype=np.int64).reshape(len(masks), len(xs))
    got = round_limb_sums(*banded_subset_sums(banded, sel))
    want = [
        ref_round(sum((Fraction(x) for x, m in zip(xs, mk, strict=True) if m), Fraction(0)))
        for mk in masks
    ]
    assert_same_bits(got, want)


@FAST
@given(outliers_and_masks())
def test_banded_variance_matches_fraction_formula(
    case: tuple[list[float], list[list[bool]]],
) -> None:
    xs, masks = case
    a = np.array(xs, dtype=np.float64)
    sel = np.array(masks, dtype=np.int64).reshape(len(masks), len(xs))
    s1, base1 = banded_subset_sums(encode_float_bands(a, sum_limb_bits(len(xs))), sel)
    s2, base2 = banded_subset_sums(encode_float_square_bands(a), sel)
    got = exact_sample_variance(sel.sum(axis=1), s1, base1, s2, base2)
    for row, mk in zip(got.tolist(), masks, strict=True):
        want = ref_variance([x for x, m in zip(xs, mk, strict=True) if m])
        if math.isnan(want):
            assert math.isnan(row)
        else:
            assert bits(row) == bits(want), (xs, mk, row, want)


def test_two_extremes_leave_the_dense_band_as_narrow_as_the_clean_data() -> None:
    """The benchmark's case: dwell times with 1e300 and 5e-324. Without bands, 65 limbs of 32
    bits for every row; with them, the clean data's 2 limbs of 39 bits and two sparse rows."""
    rng = np.random.default_rng(7)
    x = np.round(rng.lognormal(8.5, 1.0, 300_000), 3)
    clean = encode_float_bands(x, 39)
    assert not clean.sparse and clean.dense.n_limbs == 2
    x[[5, 150_000]] = [1e300, 5e-324]
    assert encode_float_limbs(x, 39).n_limbs == 65
    banded = encode_float_bands(x, 39)
    assert banded.dense.n_limbs == 2 and banded.dense.base_exp == clean.dense.base_exp
    assert banded.outlier_rows.tolist() == [5, 150_000]
    assert sum(b.encoding.n_limbs for b in banded.sparse) <= 3
    squares = encode_float_square_bands(x)
    assert squares.dense.n_limbs <= encode_float_square_limbs(np.delete(x, [5, 150_000])).n_limbs
    assert {5, 150_000} <= set(squares.outlier_rows.tolist())
    assert len(squares.outlier_rows) <= 10
    # Windows over all rows: the dense sums plus the bands' are the exact sums.
    sel = np.ones((1, x.size), dtype=np.int64)
    got = round_limb_sums(*banded_subset_sums(banded, sel))
    assert bits(got[0]) == bits(math.fsum(x.tolist()))


def test_values_spread_over_the_whole_range_keep_the_one_encoding() -> None:
    """When no band holds most rows (random bit patterns), sparse rows would cost more than the
    full span: the encoding is the plain one (today's cost, which follows the span)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2**63, 5_000, dtype=np.int64).view(np.float64)
    x = x[np.isfinite(x)]
    banded = encode_float_bands(x, 39)
    plain = encode_float_limbs(x, 39)
    assert not banded.sparse and np.array_equal(banded.dense.limbs, plain.limbs)
    assert not encode_float_square_bands(x).sparse


def test_two_clusters_take_one_dense_and_one_sparse_band() -> None:
    rng = np.random.default_rng(4)
    bulk = np.round(rng.lognormal(5, 1, 3_000), 2)
    x = np.concatenate([bulk * 1e-300, bulk * 1e290, bulk])
    banded = encode_float_bands(x, 39)
    assert banded.dense.n_limbs <= 3
    assert len(banded.outlier_rows) == 6_000  # the two smaller clusters
    assert sum(b.encoding.n_limbs for b in banded.sparse) <= 6
    assert band_values(banded, x.size)[::997] == [Fraction(v) for v in x[::997]]


def test_exponent_cells_are_lowest_bit_and_top() -> None:
    from daedalus.pit.exact import _MIN_EXP, _SPAN_SLOTS, _exponent_cells

    values = [0.0, -0.0, MIN_SUB, -MIN_SUB, MIN_NORMAL, MIN_NORMAL - MIN_SUB, 1.0, 1.5, 0.1]
    values += [MAX_FLOAT, 2.0**1023, 3 * MIN_SUB, 1e300, -7.25]
    cells = _exponent_cells(np.array(values)).tolist()
    for v, cell in zip(values, cells, strict=True):
        if v == 0:
            assert cell == 0
            continue
        num, den = abs(Fraction(v)).as_integer_ratio()
        lsb = (num & -num).bit_length() - 1 - (den.bit_length() - 1)
        top = math.frexp(abs(v))[1]
        assert cell == 1 + (lsb - _MIN_EXP) * _SPAN_SLOTS + (top - lsb), v


def test_add_limb_sums_aligns_scales_exactly() -> None:
    rng = np.random.default_rng(9)
    parts = [
        (rng.integers(INT64_MIN, INT64_MAX, (5, 3), dtype=np.int64), -1074, 39),
        (rng.integers(INT64_MIN, INT64_MAX, (5, 2), dtype=np.int64), 7, 52),
        (rng.integers(-(2**40), 2**40, (5, 1), dtype=np.int64), 900, 32),
    ]
    out, base = add_limb_sums(parts)
    assert base == -1074 and int(np.abs(out).max()) < 3 * len(parts) * 2**33
    for i in range(5):
        want = sum(limbs_row_value_bits(sums[i], b, width) for sums, b, width in parts)
        assert limbs_row_value_bits(out[i], base, 32) == want
    with pytest.raises(ValueError, match="no parts"):
        add_limb_sums([])
    with pytest.raises(ValueError, match="row counts"):
        add_limb_sums([(np.zeros((2, 1), np.int64), 0, 32), (np.zeros((3, 1), np.int64), 0, 32)])
    with pytest.raises(ValueError, match="limb_bits"):
        add_limb_sums([(np.zeros((2, 1), np.int64), 0, 60)])
    with pytest.raises(ValueError, match="max_limbs"):
        encode_float_bands(np.ones(3), max_limbs=0)


_LIMB_SUM = st.integers(-(2**63) + 2**31 + 1, 2**63 - 2**31 - 1)  # what MAX_SUM_ROWS bounds


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda k: st.lists(st.lists(_LIMB_SUM, min_size=k, max_size=k), min_size=1, max_size=30)
    )
)
def test_limb_sums_become_the_exact_python_ints(rows: list[list[int]]) -> None:
    """The variance decoder's row conversion: carries in numpy, one int.from_bytes a row."""
    from daedalus.pit.exact import _rows_to_ints

    sums = np.array(rows, dtype=np.int64)
    want = [sum(v << (32 * k) for k, v in enumerate(r)) for r in rows]
    assert _rows_to_ints(sums) == want
