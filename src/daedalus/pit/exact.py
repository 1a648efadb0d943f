"""Exact numeric kernel: float order keys, int64 limb encodings and correctly rounded decoding."""

# Why this module exists: DuckDB and Polars must produce bit-identical rolling aggregates, and
# floating-point summation is order dependent. So the core encodes every value as a handful of
# exact integers ("limbs"), the engines only ever add (or min/max) int64s, which is associative
# and therefore order independent, and the core decodes the integer sums with a single, correct
# rounding. Everything on the fast paths is column-vectorised numpy: these run over 10M-row arrays.
# The number of limbs follows a column's exponent span, so a few values far from the bulk are
# split off into sparse bands (`encode_float_bands`) rather than widening every row.

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DENSE_LIMBS",
    "DENSE_SQUARE_LIMBS",
    "LIMB_BITS",
    "MAX_SUM_ROWS",
    "BandedEncoding",
    "LimbEncoding",
    "SparseBand",
    "add_limb_sums",
    "encode_float_bands",
    "encode_float_limbs",
    "encode_float_square_bands",
    "encode_float_square_limbs",
    "encode_int_limbs",
    "exact_sample_variance",
    "float_from_order_key",
    "float_order_key",
    "relimb",
    "round_limb_sums",
    "round_limb_sums_to_int",
    "sum_limb_bits",
]

LIMB_BITS: Final[int] = 32
"""Width of a limb by default and of every limb sum the decoders take: |limb| < 2**LIMB_BITS.
(`encode_float_limbs` can use wider limbs, see `sum_limb_bits`; `relimb` converts their sums.)"""

MAX_SUM_ROWS: Final[int] = 2**31
"""Largest number of rows whose 32-bit limbs may be summed in int64 without overflow.

Every 32-bit limb has |limb| <= 2**32 - 1, so a sum over N <= 2**31 rows is bounded by
2**63 - 2**31 < 2**63. (Prefix-sum differences are also fine past this bound if the engine's
int64 arithmetic wraps silently, because the wanted window sum itself still fits.)"""

_U32: Final = np.uint64(0xFFFF_FFFF)
_I32: Final = np.int64(0xFFFF_FFFF)
_LOW63: Final = np.int64(0x7FFF_FFFF_FFFF_FFFF)
_TWO53: Final = 9007199254740992.0  # 2.0**53
_FRACTION: Final = np.int64((1 << 52) - 1)
_BLOCK: Final = 1 << 18  # rows per block of the float encoder's scratch buffers
_MIN_EXP: Final = -1074  # exponent of the smallest subnormal, 2**-1074
_PAD: Final = 3  # zero digits appended so a 64-bit window read never indexes out of range
_U: Final = np.uint64
_WIDEST_LIMB: Final = 52  # a limb must stay an exact float64 integer while it is encoded
_WIDE_SPAN: Final = 1000  # wider spans overflow the float encoder: 32-bit integer path

DENSE_LIMBS: Final[int] = 3
"""Most limbs of a value column's dense band (`encode_float_bands`): a column whose exponent
span needs more is split into a dense band of the bulk and sparse bands of the other rows."""

DENSE_SQUARE_LIMBS: Final[int] = 6
"""Most 32-bit limbs of the squares' dense band (`encode_float_square_bands`): 6 hold the
squares of values spanning 96 bits (the benchmark's dwell times span 66 bits: 5 limbs)."""

_SPARSE_ROW_COST: Final = 64
"""What a row in a sparse band costs beyond its limbs, in limb cells of a dense row: its share
of the second kernel call (the probes of its key, each reading every sparse limb sum) and of
the exact combination at decode. Deliberately high: saving one dense limb is worth a split only
when about 1 row in 70 or fewer leaves the band; saving 60 limbs (5e-324 among dwell times)
is worth it even when nearly half the rows are sparse, as long as they share a few bands."""

# Cells of the (lowest set bit, top) exponent histogram (`_exponent_cells`): a nonzero value
# with 2**lsb its lowest set bit and |x| < 2**top is cell 1 + (lsb + 1074) * 64 + (top - lsb),
# top - lsb in 1..53; zero is cell 0.
_SPAN_SLOTS: Final = 64
_CELLS: Final = 1 + (1023 - _MIN_EXP + 1) * _SPAN_SLOTS


@dataclass(frozen=True, eq=False)
class LimbEncoding:
    """Exact integer encoding of a 1-D array of numbers as int64 limbs.

    Invariant: ``value[i] == sum_k limbs[i, k] * 2**(limb_bits * k + base_exp)`` exactly, every
    ``|limbs[i, k]| < 2**limb_bits`` and all limbs of a row share the value's sign (a negative value
    has all limbs <= 0). Hence summing ``limbs`` column-wise in int64 over any subset of fewer
    than ``2**(63 - limb_bits)`` rows (``MAX_SUM_ROWS`` for 32-bit limbs) gives, after
    ``round_limb_sums(relimb(sums, limb_bits), base_exp)``, the exact subset sum rounded once.
    ``eq=False`` because array fields make ``==`` ambiguous.
    """

    limbs: npt.NDArray[np.int64]  # shape (n, K), K >= 1
    base_exp: int
    limb_bits: int = LIMB_BITS

    @property
    def n_limbs(self) -> int:
        """Number of limb columns K."""
        return int(self.limbs.shape[1])


@dataclass(frozen=True, eq=False)
class SparseBand:
    """The exact encoding of a few rows of a column (a band of exponents the dense one lacks)."""

    rows: npt.NDArray[np.int64]  # sorted row numbers into the encoded column
    encoding: LimbEncoding  # of those rows' values (or squares), one row each, in that order


@dataclass(frozen=True, eq=False)
class BandedEncoding:
    """A column's values (or squares) as a dense encoding of every row plus sparse bands.

    Invariant: ``value[i] == dense(i) + band(i)`` exactly, where ``dense(i)`` is the value of
    ``dense.limbs[i]`` (see `LimbEncoding`) and ``band(i)`` that of row i's limbs in the one
    sparse band listing it (0 when none does); a row listed in a band has all-zero dense limbs.
    So a window's sum is the dense limbs' sum plus each band's sum over the window's rows of
    that band, all exact integers (`add_limb_sums` adds them up; `round_limb_sums` rounds).
    """

    dense: LimbEncoding
    sparse: tuple[SparseBand, ...] = ()

    @property
    def outlier_rows(self) -> npt.NDArray[np.int64]:
        """The rows of every sparse band, sorted."""
        if not self.sparse:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.concatenate([band.rows for band in self.sparse]))


# --------------------------------------------------------------------------- order keys


def float_order_key(x: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Map floats to int64 keys whose integer order is IEEE 754 totalOrder.

    Promises, for non-NaN inputs: ``-inf < ... < -0.0 < +0.0 < ... < +inf`` strictly, so
    ``min``/``max`` over keys picks the same element regardless of engine, and
    ``float_from_order_key`` inverts it bit for bit. NaNs get keys outside that range (positive
    NaNs above +inf, negative ones below -inf), as totalOrder prescribes. Any shape is accepted.
    Raises TypeError for non-floating input (float16/float32 are widened exactly first).
    """
    a = _as_float64(x, "float_order_key")
    bits = a.view(np.int64)
    # Negative floats are sign-magnitude: flipping the 63 low bits turns "bigger magnitude"
    # into "smaller integer" while the set sign bit keeps them below every positive key.
    return bits ^ ((bits >> 63) & _LOW63)


def float_from_order_key(k: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Exact inverse of ``float_order_key`` (bit-exact, including -0.0 and NaN payloads).

    Raises TypeError unless ``k`` has a signed integer dtype.
    """
    a = np.asarray(k)
    if a.dtype.kind != "i":
        raise TypeError(f"float_from_order_key: expected signed int64 keys, got dtype {a.dtype}")
    bits = a.astype(np.int64, copy=False)
    # The map is an involution: the flip never touches bit 63, so the same test undoes it.
    return (bits ^ ((bits >> 63) & _LOW63)).view(np.float64)


# --------------------------------------------------------------------------- encoding


def encode_float_limbs(x: npt.ArrayLike, limb_bits: int = LIMB_BITS) -> LimbEncoding:
    """Encode finite floats exactly as int64 limbs (see ``LimbEncoding`` for the invariant).

    ``base_exp`` is the exponent of the lowest set bit over all nonzero values (0 when there are
    none), and K is the fewest limbs of ``limb_bits`` bits (32 to 52; see `sum_limb_bits`)
    holding the largest value at that scale (at least 1). Subnormals and huge magnitude spans
    work; a span of 1e-300..1e300 needs ~64 limbs of 32 bits (spans wider than 1000 bits are
    always encoded in 32-bit limbs: read the result's ``limb_bits``). `encode_float_bands`
    keeps K small when only a few values make the span wide.
    ±0.0 both encode to all-zero limbs (sums therefore decode to +0.0).
    Raises ValueError if ``x`` is not 1-D or contains NaN or ±inf, or for a limb width outside
    32..52; TypeError if not floating.
    """
    _check_limb_bits(limb_bits, "encode_float_limbs")
    a = _as_float64_1d(x, "encode_float_limbs")
    if not a.size or not bool(np.any(a)):
        return LimbEncoding(limbs=np.zeros((a.size, 1), dtype=np.int64), base_exp=0)
    return _encode_float_limbs_at(a, _lowest_set_bit_exponent(a), _top_exponent(a), limb_bits, None)


def _check_limb_bits(limb_bits: int, who: str) -> None:
    if not LIMB_BITS <= limb_bits <= _WIDEST_LIMB:
        raise ValueError(f"{who}: limb_bits must be {LIMB_BITS}..{_WIDEST_LIMB}, got {limb_bits}")


def _encode_float_limbs_at(
    a: npt.NDArray[np.float64],
    base: int,
    top: int,
    limb_bits: int,
    cut: list[npt.NDArray[np.int64]] | None,
) -> LimbEncoding:
    """`encode_float_limbs` of `a` at a known lowest set bit `base` and top: every value is a
    multiple of ``2**base`` below ``2**top``, or, with a `cut` list, the values that are not
    (`_outside`) are encoded as 0 and their row numbers appended to `cut`, block by block."""
    if top - base > _WIDE_SPAN:  # |value| / 2**base would overflow float64: the integer path
        assert cut is None  # a band is never this wide
        return _encode_float_limbs_wide(a)
    k = max(1, -(-(top - base) // limb_bits))
    down, up = 2.0**-limb_bits, 2.0**limb_bits
    # Float arithmetic that is exact: scaling by a power of two (no overflow, see above; an
    # underflow only loses bits far below 1, which floor drops anyway), floor of a float, and
    # the subtraction of two integers whose difference is < 2**limb_bits <= 2**52 (Sterbenz).
    # So limb j is bits [bj, bj + b) of the integer |value| / 2**base, for b = limb_bits,
    # computed in a few vector passes.
    # Blocks of rows with reused scratch buffers: fresh memory costs page faults, blocks don't.
    limbs = np.empty((a.size, k), dtype=np.int64, order="F")  # each limb column contiguous
    size = min(a.size, _BLOCK)
    buffers = [np.empty(size) for _ in range(4)]
    for lo in range(0, a.size, _BLOCK):
        part = a[lo : lo + _BLOCK]
        y, floor, higher, scaled = (b[: len(part)] for b in buffers)
        np.abs(part, out=y)
        outside = None if cut is None else _outside(y, base, top, lo, cut)
        with np.errstate(over="ignore"):  # only values outside the band can overflow
            np.ldexp(y, -base, out=y)  # an integer: every value is a multiple of 2**base
        if outside is not None:
            y[outside] = 0.0
        np.copyto(floor, y)
        for j in range(k):
            np.multiply(y, down, out=y)  # |value| / 2**(base + b (j + 1))
            np.floor(y, out=higher)
            np.multiply(higher, up, out=scaled)
            np.subtract(floor, scaled, out=floor)  # bits [bj, bj + b): limb j's magnitude
            np.copysign(floor, part, out=floor)
            limbs[lo : lo + len(part), j] = floor
            floor, higher = higher, floor
    return LimbEncoding(limbs=limbs, base_exp=base, limb_bits=limb_bits)


def _outside(
    mag: npt.NDArray[np.float64],
    base: int,
    top: int,
    lo: int,
    cut: list[npt.NDArray[np.int64]],
) -> npt.NDArray[np.int64] | None:
    """The rows of a block of magnitudes `mag` (rows `lo`...) outside the band: nonzero and
    not a multiple of ``2**base`` below ``2**top``. Appends their row numbers to `cut` and
    returns their positions in the block (None when there are none)."""
    with np.errstate(over="ignore"):  # 2**1024 and values far above the band overflow
        scaled = np.ldexp(mag, -base)  # exact for |x| >= 2**base
        out = (mag >= np.ldexp(1.0, top)) | (np.floor(scaled) != scaled)
    out |= (mag < np.ldexp(1.0, base)) & (mag != 0.0)  # tiny values may underflow to 0 above
    at = np.flatnonzero(out)
    if not len(at):
        return None
    cut.append(at + lo)
    return at


def sum_limb_bits(rows: int) -> int:
    """The widest limb (32 to 52 bits) whose sums over any `rows` rows fit in int64.

    A limb is below ``2**b`` in magnitude, so a sum over ``rows < 2**(63 - b)`` rows is below
    ``2**63``. Wider limbs mean fewer of them: a value spanning 67 bits needs 3 limbs of 32
    bits but 2 of 39 (the widest for 10M rows), and each limb is a column the engines sum.
    """
    return max(LIMB_BITS, min(_WIDEST_LIMB, 63 - max(rows, 1).bit_length()))


def relimb(sums: npt.ArrayLike, limb_bits: int) -> npt.NDArray[np.int64]:
    """Limb sums of ``limb_bits``-bit limbs re-expressed exactly as 32-bit limb sums.

    Row i denotes ``sum_k sums[i, k] * 2**(limb_bits * k)``; the result denotes the same
    integer as ``sum_j out[i, j] * 2**(32 * j)``, with every entry below ``2**36`` in magnitude
    (not normalised: `round_limb_sums` and `exact_sample_variance` accept that). Each int64 is
    split at 32-bit boundaries of its own offset, so nothing can overflow.
    """
    a = _as_sums(sums, LIMB_BITS, "relimb")
    if limb_bits == LIMB_BITS:
        return a
    if not LIMB_BITS < limb_bits <= _WIDEST_LIMB:
        raise ValueError(f"relimb: limb_bits must be {LIMB_BITS}..{_WIDEST_LIMB}, got {limb_bits}")
    m, k = a.shape
    out = np.zeros((m, (limb_bits * (k - 1)) // 32 + 3), dtype=np.int64)
    for j in range(k):
        _add_shifted(out, a[:, j], limb_bits * j)
    return out


def _add_shifted(out: npt.NDArray[np.int64], col: npt.NDArray[np.int64], offset: int) -> None:
    """Add ``col * 2**offset`` (any int64s) into the 32-bit limb sums `out`, exactly: three
    entries from column ``offset // 32`` on grow by less than ``2**33`` each in magnitude."""
    q, r = divmod(offset, 32)
    if r == 0:  # aligned: the low 32 bits and the (signed) rest
        out[:, q] += col & _I32
        out[:, q + 1] += col >> np.int64(32)
        return
    low = (col & _I32) << np.int64(r)  # < 2**63: the low 32 bits shifted into place
    high = (col >> np.int64(32)) << np.int64(r)  # |.| <= 2**62, signed
    out[:, q] += low & _I32
    out[:, q + 1] += (low >> np.int64(32)) + (high & _I32)
    out[:, q + 2] += high >> np.int64(32)


def add_limb_sums(
    parts: Sequence[tuple[npt.ArrayLike, int, int]],
) -> tuple[npt.NDArray[np.int64], int]:
    """The exact row-wise total of limb sums at different scales, as one 32-bit limb sum.

    Each part is ``(sums, base_exp, limb_bits)`` with row i denoting
    ``sum_k sums[i, k] * 2**(limb_bits * k + base_exp)`` (any int64 contents; every part has
    the same rows). Returns ``(out, base)`` with row i of `out` denoting the sum of the parts'
    row i as ``sum_j out[i, j] * 2**(32 * j + base)``, ``base`` the smallest ``base_exp``:
    what `round_limb_sums` and `exact_sample_variance` take. Entries are not normalised; each
    stays below ``3 * len(parts) * 2**33`` in magnitude. For a dense band's sums plus those of
    sparse bands (`BandedEncoding`); the width follows the parts' span (e.g. ~66 columns for
    5e-324 and 1e300 together), so callers pass only the rows that need it.
    Raises ValueError for no parts, mismatched row counts, a non-2-D part or a limb width
    outside 32..52; TypeError for non-integer sums.
    """
    if not parts:
        raise ValueError("add_limb_sums: no parts")
    arrays = []
    for sums, base, bits in parts:
        _check_limb_bits(bits, "add_limb_sums")
        arrays.append((_as_sums(sums, LIMB_BITS, "add_limb_sums"), int(base), int(bits)))
    m = arrays[0][0].shape[0]
    if any(a.shape[0] != m for a, _, _ in arrays):
        raise ValueError(f"add_limb_sums: row counts differ: {[a.shape[0] for a, _, _ in arrays]}")
    common = min(base for _, base, _ in arrays)
    width = max((base - common + bits * (a.shape[1] - 1)) // 32 for a, base, bits in arrays) + 3
    out = np.zeros((m, width), dtype=np.int64)
    for a, base, bits in arrays:
        for j in range(a.shape[1]):
            _add_shifted(out, a[:, j], base - common + bits * j)
    return out, common


def _top_exponent(a: npt.NDArray[np.float64]) -> int:
    """The smallest `top` with every ``|value| < 2**top`` (finite, non-empty `a`)."""
    return int(np.frexp(max(abs(float(a.min())), abs(float(a.max()))))[1])


def _lowest_set_bit_exponent(a: npt.NDArray[np.float64]) -> int:
    """The exponent of the lowest set bit over the nonzero finite values of `a` (not all 0).

    Clearing the lowest set bit of a value's pattern (``bits & (bits - 1)``) and subtracting the
    result from the value gives that bit's value exactly, unless the fraction field is zero (a
    power of two, which is its own lowest bit). The smallest such value is 2**base.
    """
    smallest = np.inf
    size = min(a.size, _BLOCK)
    buffers = (np.empty(size), np.empty(size, np.int64), np.empty(size, np.int64))
    for lo in range(0, a.size, _BLOCK):
        part = a[lo : lo + _BLOCK]
        mag, cleared, fraction = (b[: len(part)] for b in buffers)
        np.abs(part, out=mag)
        bits = mag.view(np.int64)
        np.subtract(bits, 1, out=cleared)
        np.bitwise_and(bits, cleared, out=cleared)
        np.bitwise_and(bits, _FRACTION, out=fraction)
        has_fraction = fraction != 0
        low = cleared.view(np.float64)
        np.subtract(mag, low, out=low)  # the lowest set bit's value, where there is a fraction
        power_of_two = ~has_fraction & (mag != 0.0)
        smallest = min(
            smallest,
            float(low.min(where=has_fraction, initial=np.inf)),
            float(mag.min(where=power_of_two, initial=np.inf)),
        )
    return int(np.frexp(smallest)[1]) - 1


def _encode_float_limbs_wide(a: npt.NDArray[np.float64]) -> LimbEncoding:
    """`encode_float_limbs` by integer mantissa shifts: for spans wider than float64's range."""
    neg, mant, lsb, top, nonzero = _decompose(a)
    base = _min_or_zero(lsb, nonzero)
    shift = np.where(nonzero, lsb - base, 0)
    n_bits = _max_or_zero(top - base, nonzero)  # every |value| < 2**(top - base) at scale base
    k = max(1, -(-n_bits // LIMB_BITS))

    # mant < 2**53 and the in-limb offset r < 32, so mant << r < 2**85 spans 3 limbs at most.
    q = shift >> 5
    r = (shift & 31).astype(_U)
    p0, p1, p2 = _split3(mant, r)

    limbs = np.zeros((a.size, k), dtype=np.int64)
    sign = np.where(neg, np.int64(-1), np.int64(1))
    _scatter_add(limbs, q, [p0, p1, p2], sign)
    return LimbEncoding(limbs=limbs, base_exp=base)


def encode_float_square_limbs(x: npt.ArrayLike) -> LimbEncoding:
    """Encode the exact squares ``x[i]**2`` of finite floats as int64 limbs.

    Each square is the 106-bit integer ``m**2`` times ``2**(2 * e)``; it is computed exactly from
    32-bit partial products and carry-normalised, so the same bound as ``encode_float_limbs``
    holds: ``0 <= limbs < 2**32``, and column sums over up to ``MAX_SUM_ROWS`` rows are exact in
    int64. ``base_exp`` is twice that of ``encode_float_limbs(x)``. Squares far below the
    smallest subnormal are represented exactly too (no underflow happens here).
    Raises ValueError if ``x`` is not 1-D or contains NaN or ±inf; TypeError if not floating.
    """
    a = _as_float64_1d(x, "encode_float_square_limbs")
    if not a.size or not bool(np.any(a)):
        return LimbEncoding(limbs=np.zeros((a.size, 1), dtype=np.int64), base_exp=0)
    # The same base and top as a row-wise decomposition would give (lowest set bit overall,
    # and |x| < 2**top), found without one: then the rows are encoded in blocks.
    return _encode_float_square_limbs_at(a, _lowest_set_bit_exponent(a), _top_exponent(a), None)


def _encode_float_square_limbs_at(
    a: npt.NDArray[np.float64], base: int, top: int, cut: list[npt.NDArray[np.int64]] | None
) -> LimbEncoding:
    """`encode_float_square_limbs` of `a` whose values are multiples of ``2**base`` below
    ``2**top``; with a `cut` list, as `_encode_float_limbs_at` does with one."""
    k = max(1, -(-(2 * (top - base)) // LIMB_BITS))
    limbs = np.empty((a.size, k), dtype=np.int64, order="F")  # each limb column contiguous
    for start in range(0, a.size, _BLOCK):
        part = a[start : start + _BLOCK]
        if cut is not None:
            outside = _outside(np.abs(part), base, top, start, cut)
            if outside is not None:
                part = part.copy()
                part[outside] = 0.0
        _neg, mant, lsb, _top, nonzero = _decompose(part)
        shift = np.where(nonzero, 2 * (lsb - base), 0)
        # m = hi * 2**32 + lo with hi < 2**21: m**2 = hi**2 * 2**64 + 2*hi*lo * 2**32 + lo**2,
        # each partial product fitting uint64 (< 2**42, < 2**54, < 2**64 respectively).
        hi = mant >> _U(32)
        lo = mant & _U32
        q = shift >> 5
        r = (shift & 31).astype(_U)
        a0, a1, a2 = _split3(lo * lo, r)
        b0, b1, b2 = _split3(_U(2) * hi * lo, r)
        c0, c1, c2 = _split3(hi * hi, r)
        # Local digits at columns q..q+4; each sum is < 3 * 2**32, so propagate carries now to
        # get proper 32-bit digits (m**2 << r < 2**137 fits the five of them).
        d = [a0, a1 + b0, a2 + b1 + c0, b2 + c1, c2]
        for j in range(4):
            d[j + 1] += d[j] >> _U(32)
            d[j] &= _U32
        block = np.zeros((len(part), k), dtype=np.int64)
        _scatter_add(block, q, d, None)
        limbs[start : start + len(part)] = block
    return LimbEncoding(limbs=limbs, base_exp=2 * base)


# --------------------------------------------------------------------------- bands


def encode_float_bands(
    x: npt.ArrayLike, limb_bits: int = LIMB_BITS, *, max_limbs: int = DENSE_LIMBS
) -> BandedEncoding:
    """Encode finite floats exactly as a dense band of the bulk plus sparse bands of the rest.

    A column whose values fit ``max_limbs`` limbs of ``limb_bits`` bits at one scale is
    ``encode_float_limbs(x, limb_bits)`` with no sparse band: the common case costs nothing
    more. Otherwise one value far from the others (5e-324 among dwell times) would widen every
    row's encoding; instead, the exponent band of at most ``max_limbs`` limbs holding the most
    rows is encoded densely, and the rows outside it go into sparse bands (each at most
    ``max_limbs`` limbs of its own, or one band over all of them when that has fewer limbs),
    chosen by an estimate of the cost (`_plan_bands`): when most rows would be outside any
    band, the single full-span encoding is kept. Every band's limbs obey `LimbEncoding`'s
    bound for ``limb_bits`` (spans over 1000 bits use 32-bit limbs). See `BandedEncoding`.
    Raises like `encode_float_limbs`, and ValueError for ``max_limbs < 1``.
    """
    _check_limb_bits(limb_bits, "encode_float_bands")
    a = _as_float64_1d(x, "encode_float_bands")
    return _banded(a, limb_bits, max_limbs, square=False)


def encode_float_square_bands(
    x: npt.ArrayLike, *, max_limbs: int = DENSE_SQUARE_LIMBS
) -> BandedEncoding:
    """`encode_float_bands` for the exact squares (32-bit limbs, `encode_float_square_limbs`).

    The squares' bands are chosen on the squares' own exponents (twice the values'), so a
    value inside the values' dense band may well be a sparse row here, and the other way round.
    Raises like `encode_float_square_limbs`, and ValueError for ``max_limbs < 1``.
    """
    a = _as_float64_1d(x, "encode_float_square_bands")
    return _banded(a, LIMB_BITS, max_limbs, square=True)


def _banded(
    a: npt.NDArray[np.float64], limb_bits: int, max_limbs: int, *, square: bool
) -> BandedEncoding:
    if max_limbs < 1:
        raise ValueError(f"encode_float_bands: max_limbs must be >= 1, got {max_limbs}")
    scale = 2 if square else 1  # squares' exponents are twice the values'

    def encode(values: npt.NDArray[np.float64], base: int, top: int, cut: Any) -> LimbEncoding:
        if square:
            return _encode_float_square_limbs_at(values, base, top, cut)
        return _encode_float_limbs_at(values, base, top, limb_bits, cut)

    if not a.size or not bool(np.any(a)):
        return BandedEncoding(LimbEncoding(np.zeros((a.size, 1), dtype=np.int64), 0))
    base, top = _lowest_set_bit_exponent(a), _top_exponent(a)
    if _n_limbs(scale * (top - base), limb_bits, square) <= max_limbs:
        return BandedEncoding(encode(a, base, top, None))
    # The exponent histogram, block by block (no per-row array: fresh memory costs more than
    # recomputing a block's cells), then the plan on its few occupied cells.
    counts = np.zeros(_CELLS, dtype=np.int64)
    for lo in range(0, a.size, _BLOCK):
        counts += np.bincount(_exponent_cells(a[lo : lo + _BLOCK]), minlength=_CELLS)
    occupied = np.flatnonzero(counts[1:]) + 1  # cell 0 is zero: in every band
    lsb = (occupied - 1) // _SPAN_SLOTS + _MIN_EXP
    tops = lsb + (occupied - 1) % _SPAN_SLOTS
    band = _plan_bands(
        scale * lsb, scale * tops, counts[occupied], a.size, limb_bits, max_limbs, square=square
    )
    if band is None:  # no split is cheaper
        return BandedEncoding(encode(a, base, top, None))
    # The dense band: the rows of its cells are exactly the multiples of 2**base_d (or zero)
    # below 2**top_d, so the encoder finds the others (the outliers) as it goes.
    dense_cells = band < 0
    cut: list[npt.NDArray[np.int64]] = []
    dense = encode(a, int(lsb[dense_cells].min()), int(tops[dense_cells].max()), cut)
    outliers = np.concatenate(cut) if cut else np.zeros(0, dtype=np.int64)
    band_of_cell = np.full(_CELLS, -1, dtype=np.int64)
    band_of_cell[occupied] = band
    of_outlier = band_of_cell[_exponent_cells(a[outliers])]
    assert bool((of_outlier >= 0).all()), "a row outside the dense band has no sparse band"
    sparse = []
    for j in range(int(band.max()) + 1):
        rows = outliers[of_outlier == j]
        mine = band == j
        values = a[rows]
        sparse.append(
            SparseBand(rows, encode(values, int(lsb[mine].min()), int(tops[mine].max()), None))
        )
    return BandedEncoding(dense, tuple(sparse))


def _n_limbs(span: int, limb_bits: int, square: bool) -> int:
    """Limbs of an encoding of values (or squares, whose `span` is already doubled) spanning
    `span` bits: what `_encode_float_limbs_at` and `_encode_float_square_limbs_at` make."""
    if square or span > _WIDE_SPAN:
        return max(1, -(-span // LIMB_BITS))
    return max(1, -(-span // limb_bits))


def _exponent_cells(a: npt.NDArray[np.float64]) -> npt.NDArray[np.int32]:
    """Each value's cell of the exponent histogram: 0 for zero, else
    ``1 + (lsb + 1074) * 64 + (top - lsb)`` with 2**lsb its lowest set bit and |x| < 2**top."""
    cells = np.empty(a.size, dtype=np.int32)
    size = min(a.size, _BLOCK)
    mag, low, frac = np.empty(size), np.empty(size), np.empty(size)
    top, lsb, cleared = np.empty(size, np.int32), np.empty(size, np.int32), np.empty(size, np.int64)
    for lo in range(0, a.size, _BLOCK):
        part = a[lo : lo + _BLOCK]
        n = len(part)
        m, lw, fr, tp, ls, cl = mag[:n], low[:n], frac[:n], top[:n], lsb[:n], cleared[:n]
        np.abs(part, out=m)
        bits = m.view(np.int64)
        np.frexp(m, out=(fr, tp))  # |x| < 2**top; (0, 0) for zero
        np.subtract(bits, 1, out=cl)
        np.bitwise_and(bits, cl, out=cl)
        # As in `_lowest_set_bit_exponent`: value minus value-without-its-lowest-bit is that
        # bit, unless the fraction field is zero (a power of two is its own lowest bit).
        np.subtract(m, cl.view(np.float64), out=lw)
        power_of_two = (bits & _FRACTION) == 0
        np.copyto(lw, m, where=power_of_two)
        np.frexp(lw, out=(fr, ls))  # lowest bit 2**(ls - 1)
        out = cells[lo : lo + n]
        np.add(ls, -1 - _MIN_EXP, out=out)  # lsb + 1074, with lsb = ls - 1
        out *= _SPAN_SLOTS
        out += tp
        out -= ls
        out += 2  # + 1 + (top - lsb)
        out[m == 0.0] = 0
    return cells


def _plan_bands(
    lsb: npt.NDArray[np.int64],
    top: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    n_rows: int,
    limb_bits: int,
    max_limbs: int,
    *,
    square: bool,
) -> npt.NDArray[np.int64] | None:
    """Each occupied exponent cell's band (-1: the dense band, j >= 0: sparse band j), or None
    when one encoding of the whole span is the cheapest.

    Cells are (lowest set bit, top) exponent pairs of the encoded numbers with their row
    counts. Cost, in limb cells: every row carries the dense band's limbs, and a sparse row
    its band's limbs plus `_SPARSE_ROW_COST`. For each dense width of 1 to `max_limbs` limbs,
    the band start holding the most rows is found by a difference array over starts (a cell
    fits the band ``[B, B + W)`` iff ``top - W <= B <= lsb``); the rows outside are banded
    greedily (`_sparse_bands`). The cheapest choice wins, one full encoding included.
    """
    width = LIMB_BITS if square else limb_bits
    total = int(counts.sum())
    best_cost = n_rows * _n_limbs(int(top.max() - lsb.min()), limb_bits, square)
    best = None
    for k in range(1, max_limbs + 1):
        w = k * width
        fits = (top - lsb) <= w
        if not bool(fits.any()):
            continue
        first, last = top[fits] - w, lsb[fits]
        offset = int(first.min())
        diff = np.zeros(int(last.max()) - offset + 2, dtype=np.int64)
        np.add.at(diff, first - offset, counts[fits])
        np.add.at(diff, last - offset + 1, -counts[fits])
        start = offset + int(np.argmax(np.cumsum(diff)))
        dense = (lsb >= start) & (top <= start + w)
        outside = total - int(counts[dense].sum())
        band, sparse_limbs = _sparse_bands(lsb, top, ~dense, limb_bits, max_limbs, square)
        cost = n_rows * k + outside * (sparse_limbs + _SPARSE_ROW_COST)
        if cost < best_cost:
            best_cost, best = cost, band
    return best


def _sparse_bands(
    lsb: npt.NDArray[np.int64],
    top: npt.NDArray[np.int64],
    chosen: npt.NDArray[np.bool_],
    limb_bits: int,
    max_limbs: int,
    square: bool,
) -> tuple[npt.NDArray[np.int64], int]:
    """The bands of the `chosen` cells (-1 elsewhere) and their total limb count: greedy bands
    of at most `max_limbs` limbs (each starts at the lowest remaining bit and takes every cell
    that fits; wider only if one value needs more), or one band over them all when that needs
    fewer limbs."""
    band = np.full(len(lsb), -1, dtype=np.int64)
    if not bool(chosen.any()):
        return band, 0
    # At least as wide as the widest value (53 bits, or 106 for a square), so that every band
    # takes the cells starting at its lowest bit.
    w = max(max_limbs * (LIMB_BITS if square else limb_bits), int((top - lsb)[chosen].max()))
    left = chosen.copy()
    limbs = 0
    j = 0
    while bool(left.any()):
        start = int(lsb[left].min())
        take = left & (top <= start + w)  # every left cell has lsb >= start
        band[take] = j
        limbs += _n_limbs(int(top[take].max()) - start, limb_bits, square)
        left &= ~take
        j += 1
    single = _n_limbs(int(top[chosen].max() - lsb[chosen].min()), limb_bits, square)
    if single < limbs:
        band[chosen] = 0
        return band, single
    return band, limbs


def encode_int_limbs(x: npt.ArrayLike) -> LimbEncoding:
    """Encode integers exactly as two int64 limbs: low 32 bits and the high part, base_exp 0.

    Sign-magnitude, so both limbs carry the value's sign and |limb| < 2**32 (INT64_MIN encodes as
    ``[0, -2**31]``). Any integer dtype is accepted, including uint64 values above INT64_MAX.
    Raises ValueError if ``x`` is not 1-D, TypeError if it is not an integer dtype.
    """
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"encode_int_limbs: expected an integer dtype, got {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"encode_int_limbs: expected a 1-D array, got shape {a.shape}")
    if a.dtype.kind == "u":
        mag = a.astype(_U)
        neg = np.zeros(a.shape, dtype=bool)
    else:
        s = a.astype(np.int64)
        neg = s < 0
        # Negate in uint64 so INT64_MIN's magnitude 2**63 is representable (no wrap to itself).
        u = s.view(_U)
        mag = np.where(neg, ~u + _U(1), u)
    limbs = np.empty((a.size, 2), dtype=np.int64)
    low = (mag & _U32).view(np.int64)
    high = (mag >> _U(32)).view(np.int64)
    limbs[:, 0] = np.where(neg, -low, low)
    limbs[:, 1] = np.where(neg, -high, high)
    return LimbEncoding(limbs=limbs, base_exp=0)


# --------------------------------------------------------------------------- decoding


def round_limb_sums(
    sums: npt.ArrayLike, base_exp: int, limb_bits: int = LIMB_BITS
) -> npt.NDArray[np.float64]:
    """Decode limb sums to float64, correctly rounded (round half to even), one result per row.

    Row i denotes ``sum_k sums[i, k] * 2**(limb_bits * k + base_exp)``; any int64 contents are
    accepted (limbs need not be normalised or sign-consistent). Promises: the nearest float64
    with ties to even, subnormal results included; magnitudes >= 2**1024 - 2**970 give ±inf; an
    exact zero gives +0.0 (never -0.0), while a nonzero negative value too small to represent
    rounds to -0.0 as IEEE prescribes (impossible for sums of ``encode_float_limbs`` limbs, which
    are multiples of 2**-1074). Raises ValueError unless ``sums`` is 2-D and ``limb_bits`` is 32,
    TypeError unless it is an integer array.
    """
    s = _as_sums(sums, limb_bits, "round_limb_sums")
    digits, neg = _sign_magnitude(s)
    n_dig = s.shape[1] + 1
    bit_len = _bit_length(digits, n_dig)

    # Bits below the kept LSB are dropped: the LSB is 52 below the top bit for normal results,
    # but never below 2**-1074 (subnormal range, where precision shrinks).
    drop = np.maximum(bit_len - 53, _MIN_EXP - base_exp)
    sh = np.maximum(drop, 0)
    has_guard = sh > 0
    window, sticky = _window64(digits, np.maximum(sh - 1, 0), n_dig)
    # With a guard bit, window = floor(mag / 2**(sh-1)) < 2**54; without, window = mag < 2**53.
    guard = has_guard & ((window & _U(1)) != 0)
    kept = np.where(has_guard, window >> _U(1), window)
    up = guard & (sticky | ((kept & _U(1)) != 0))
    kept = kept + up.astype(_U)  # may become 2**53: still exact in float64

    # kept * 2**exp is exact (kept <= 2**53, exp >= -1074) or overflows to inf in ldexp; the clip
    # only keeps the exponent inside int32 where the result is inf (or 0 * 2**big) anyway.
    exp = np.minimum(base_exp + sh, 4096).astype(np.int32)
    with np.errstate(over="ignore"):  # overflow to ±inf is the specified result, not an error
        mag = np.ldexp(kept.astype(np.float64), exp)
    return np.where(neg, -mag, mag)


def round_limb_sums_to_int(
    sums: npt.ArrayLike, base_exp: int = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Decode integer limb sums exactly to int64, returning ``(values, overflow_mask)``.

    Row i denotes ``sum_k sums[i, k] * 2**(32 * k + base_exp)``. Where that integer fits int64 it
    is returned exactly and the mask is False; otherwise the mask is True and the value is 0.
    Raises ValueError unless ``sums`` is 2-D, or if ``base_exp < 0`` and some row is not an
    integer; TypeError unless ``sums`` is an integer array.
    """
    s = _as_sums(sums, LIMB_BITS, "round_limb_sums_to_int")
    digits, neg = _sign_magnitude(s)
    n_dig = s.shape[1] + 1
    bit_len = _bit_length(digits, n_dig)
    pos = np.full(s.shape[0], max(-base_exp, 0), dtype=np.int64)
    window, frac = _window64(digits, pos, n_dig)
    if base_exp < 0 and bool(frac.any()):
        bad = np.flatnonzero(frac)[:5].tolist()
        raise ValueError(
            f"round_limb_sums_to_int: rows {bad} are not integers at base_exp {base_exp}"
        )
    value_bits = np.where(bit_len > 0, bit_len + base_exp, 0)
    # Shifting by >= 64 is undefined in numpy; such rows overflow anyway (value_bits > 64).
    u = window << _U(min(max(base_exp, 0), 63))
    fits = (value_bits <= 63) | ((value_bits == 64) & neg & (u == _U(2**63)))
    values = np.where(neg, ~u + _U(1), u).view(np.int64)
    overflow = ~fits
    values[overflow] = 0
    return values, overflow


def exact_sample_variance(
    n: npt.ArrayLike,
    s1: npt.ArrayLike,
    base1: int,
    s2: npt.ArrayLike,
    base2: int,
) -> npt.NDArray[np.float64]:
    """Sample variance from exact limb sums, rounded once and correctly to float64.

    Row i: with count ``n[i]``, value sum ``S1`` (limb sums ``s1[i]`` at ``base1``) and sum of
    squares ``S2`` (``s2[i]`` at ``base2``, e.g. from ``encode_float_square_limbs``), returns the
    exact rational ``(n*S2 - S1**2) / (n*(n-1))`` correctly rounded (ties to even; +inf if it
    overflows). Rows with ``n < 2`` get NaN, which the caller turns into null. The sample stddev
    is ``np.sqrt`` of this: sqrt is correctly rounded in IEEE 754, so it is deterministic across
    engines too (it is the rounded sqrt of the rounded variance, not of the exact one).
    Per-row Python integers: slower than the other kernels, but only run once per output row.
    Raises ValueError on shape mismatches or if a row's sums are inconsistent (n*S2 < S1**2),
    TypeError on non-integer inputs.
    """
    counts = np.asarray(n)
    if counts.dtype.kind not in "iu":
        raise TypeError(f"exact_sample_variance: n must be integers, got dtype {counts.dtype}")
    if counts.ndim != 1:
        raise ValueError(f"exact_sample_variance: n must be 1-D, got shape {counts.shape}")
    a1 = _as_sums(s1, LIMB_BITS, "exact_sample_variance(s1)")
    a2 = _as_sums(s2, LIMB_BITS, "exact_sample_variance(s2)")
    if not (a1.shape[0] == a2.shape[0] == counts.shape[0]):
        raise ValueError(
            "exact_sample_variance: row counts differ: "
            f"n {counts.shape[0]}, s1 {a1.shape[0]}, s2 {a2.shape[0]}"
        )
    out = np.full(counts.shape[0], np.nan, dtype=np.float64)
    rows = np.flatnonzero(counts >= 2)
    # Scale both terms to a common power of two so the numerator is an integer.
    common = min(base2, 2 * base1)
    up2, up1 = base2 - common, 2 * base1 - common
    for i, cnt, total1, total2 in zip(
        rows.tolist(),
        counts[rows].tolist(),
        _rows_to_ints(a1[rows]),
        _rows_to_ints(a2[rows]),
        strict=True,
    ):
        num = ((cnt * total2) << up2) - ((total1 * total1) << up1)
        if num < 0:
            raise ValueError(f"exact_sample_variance: row {i} has n*S2 < S1**2 (inconsistent sums)")
        den = cnt * (cnt - 1)
        if common >= 0:
            num <<= common
        else:
            den <<= -common
        out[i] = _ratio_to_float(num, den)
    return out


# --------------------------------------------------------------------------- helpers


def _as_float64(x: npt.ArrayLike, who: str) -> npt.NDArray[np.float64]:
    a = np.asarray(x)
    if a.dtype.kind != "f":
        raise TypeError(f"{who}: expected a floating dtype, got {a.dtype}")
    return a.astype(np.float64, copy=False)  # widening float16/32 is exact


def _as_float64_1d(x: npt.ArrayLike, who: str) -> npt.NDArray[np.float64]:
    a = _as_float64(x, who)
    if a.ndim != 1:
        raise ValueError(f"{who}: expected a 1-D array, got shape {a.shape}")
    finite = np.isfinite(a)
    if not bool(finite.all()):
        n_nan = int(np.isnan(a).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ValueError(
            f"{who}: only finite values can be encoded exactly, "
            f"found {n_nan} NaN and {n_inf} infinite value(s)"
        )
    return a


def _as_sums(sums: npt.ArrayLike, limb_bits: int, who: str) -> npt.NDArray[np.int64]:
    if limb_bits != LIMB_BITS:
        raise ValueError(f"{who}: only limb_bits={LIMB_BITS} is supported, got {limb_bits}")
    a = np.asarray(sums)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{who}: expected integer limb sums, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{who}: expected a 2-D (rows, limbs) array, got shape {a.shape}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > 2**63 - 1:
        raise ValueError(f"{who}: uint64 limb sums above INT64_MAX are not supported")
    return a.astype(np.int64, copy=False)


def _decompose(
    a: npt.NDArray[np.float64],
) -> tuple[
    npt.NDArray[np.bool_],
    npt.NDArray[np.uint64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.bool_],
]:
    """Split finite x into sign, odd mantissa m, lsb exponent e and top with |x| = m*2**e < 2**top."""
    frac, top = np.frexp(a)  # |frac| in [0.5, 1) for nonzero, subnormals normalised too
    nonzero = frac != 0.0
    mant = (np.abs(frac) * _TWO53).astype(_U)  # exact integer in [2**52, 2**53)
    # Strip trailing zero bits so base_exp is the lowest *set* bit: fewer limbs, e.g. base 0 for
    # integer-valued data. The lowest set bit is a power of two <= 2**52, so its float is exact.
    low_bit = mant & (~mant + _U(1))
    tz = np.frexp(low_bit.astype(np.float64))[1].astype(np.int64) - 1
    tz = np.where(nonzero, tz, 0)
    mant >>= tz.astype(_U)
    top64 = top.astype(np.int64)
    lsb = top64 - 53 + tz
    return frac < 0.0, mant, lsb, top64, nonzero


def _min_or_zero(v: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]) -> int:
    return int(v.min(where=mask, initial=np.iinfo(np.int64).max)) if bool(mask.any()) else 0


def _max_or_zero(v: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]) -> int:
    return int(v.max(where=mask, initial=0)) if v.size else 0


def _split3(
    v: npt.NDArray[np.uint64], r: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Three 32-bit digits of ``v << r`` for v < 2**64, 0 <= r < 32 (so v << r < 2**96)."""
    shifted = v << r  # uint64 keeps exactly bits 0..63 of the true product
    # Bits 64.. of v << r are v >> (64 - r), but numpy shifts by >= 64 are undefined (x86 masks
    # the count), so shift in two steps, which correctly yields 0 for r == 0.
    return shifted & _U32, shifted >> _U(32), (v >> (_U(63) - r)) >> _U(1)


def _scatter_add(
    limbs: npt.NDArray[np.int64],
    first_col: npt.NDArray[np.int64],
    parts: list[npt.NDArray[np.uint64]],
    sign: npt.NDArray[np.int64] | None,
) -> None:
    """Add ``parts[j]`` (each < 2**32) into ``limbs[i, first_col[i] + j]``, in place.

    Columns past the last one are clamped onto it: the caller guarantees those parts are zero
    (the value fits in K limbs), and adding zero is harmless. One row gets one write per part,
    so the fancy-indexed ``+=`` never sees duplicate indices.
    """
    n, k = limbs.shape
    flat = limbs.reshape(-1)
    row_start = np.arange(n, dtype=np.int64) * k
    for j, part in enumerate(parts):
        col = np.minimum(first_col + j, k - 1)
        vals = part.view(np.int64)
        if sign is not None:
            vals = vals * sign
        flat[row_start + col] += vals


def _sign_magnitude(
    s: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """Carry-normalise limb sums into sign and 32-bit magnitude digits.

    Returns ``digits`` of shape (K + 1 + _PAD, m), digit-major so each digit row is contiguous,
    holding |value| in base 2**32 (the extra digit absorbs the final carry; the pad is zero).
    """
    m, k = s.shape
    digits = np.zeros((k + 1 + _PAD, m), dtype=_U)
    carry = np.zeros(m, dtype=np.int64)
    for j in range(k):
        col = s[:, j]
        # Split the limb before adding the carry so no intermediate can overflow int64: the
        # carry stays within [-2**31 - 1, 2**31] and t within (-2**32, 2**33).
        t = (col & _I32) + carry
        digits[j] = (t & _I32).view(_U)
        carry = (col >> 32) + (t >> 32)
    neg = carry < 0
    # |value| <= (2**31 + 1) * 2**(32k) < 2**(32(k+1)), so k+1 digits hold the magnitude and a
    # two's-complement negation over them (invert, add one) is exact for negative rows.
    digits[k] = (carry & _I32).view(_U)
    if bool(neg.any()):
        flip = neg.astype(_U) * _U32
        inc = neg.astype(_U)
        for j in range(k + 1):
            t = (digits[j] ^ flip) + inc
            digits[j] = t & _U32
            inc = t >> _U(32)
    return digits, neg


def _bit_length(digits: npt.NDArray[np.uint64], n_dig: int) -> npt.NDArray[np.int64]:
    """Bit length of each column's magnitude (0 for zero)."""
    m = digits.shape[1]
    top_idx = np.full(m, -1, dtype=np.int64)
    for j in range(n_dig):
        top_idx[digits[j] != 0] = j
    nonzero = top_idx >= 0
    idx = np.maximum(top_idx, 0)
    top_digit = digits[idx, np.arange(m)]
    # A digit < 2**32 converts to float64 exactly, so frexp's exponent is its bit length.
    bl = np.frexp(top_digit.astype(np.float64))[1].astype(np.int64)
    return np.where(nonzero, 32 * idx + bl, 0)


def _window64(
    digits: npt.NDArray[np.uint64], pos: npt.NDArray[np.int64], n_dig: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """Bits [pos, pos + 64) of each magnitude, and whether any bit below ``pos`` is set."""
    m = digits.shape[1]
    cols = np.arange(m)
    # Past the top digit the window is all zero; clamping onto the zero pad keeps indices valid
    # and the sticky test below still covers every real digit.
    j = np.minimum(pos >> 5, n_dig)
    r = (pos & 31).astype(_U)
    d0 = digits[j, cols]
    d1 = digits[j + 1, cols]
    d2 = digits[j + 2, cols]
    window = (d0 >> r) | (d1 << (_U(32) - r)) | ((d2 << (_U(63) - r)) << _U(1))
    sticky = (d0 & ((_U(1) << r) - _U(1))) != 0
    for i in range(n_dig):
        sticky |= (digits[i] != 0) & (i < j)
    return window, sticky


def _rows_to_ints(sums: npt.NDArray[np.int64]) -> list[int]:
    """Each row's exact value sum(sums[i, k] << (LIMB_BITS * k)) as a Python int.

    The carries are propagated in numpy (every limb sum is below 2**63 - 2**31 in magnitude, so
    a limb plus a carry below 2**31 still fits an int64), leaving 32-bit digits and a signed
    int64 top; each row's bytes are then one `int.from_bytes` (little endian, two's
    complement): ~0.3 us a row where summing shifted limbs in Python took ~1.5 us.
    """
    m, k = sums.shape
    if k == 0:
        return [0] * m
    digits = np.empty((m, k), dtype=np.uint32)
    carry = np.zeros(m, dtype=np.int64)
    for j in range(k):
        d = sums[:, j] + carry
        digits[:, j] = (d & _I32).astype(np.uint32)
        carry = d >> np.int64(LIMB_BITS)
    width = 4 * k + 8
    raw = np.empty((m, width), dtype=np.uint8)
    raw[:, : 4 * k] = digits.astype("<u4").view(np.uint8).reshape(m, 4 * k)
    raw[:, 4 * k :] = carry.astype("<i8").view(np.uint8).reshape(m, 8)
    data = raw.tobytes()
    return [
        int.from_bytes(data[i : i + width], "little", signed=True)
        for i in range(0, m * width, width)
    ]


def _ratio_to_float(num: int, den: int) -> float:
    """num/den correctly rounded for den > 0, ±inf on overflow.

    CPython's int true division is correctly rounded (ties to even, subnormals included) and
    raises OverflowError exactly when the rounded result would be infinite.
    """
    try:
        return num / den
    except OverflowError:
        return math.inf if num > 0 else -math.inf  # copysign would convert the huge int
