"""Tests for daedalus.catalog.dtypes: parsing, formatting, errors and round-trips."""

import pickle

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daedalus.catalog.dtypes import (
    KNOWN_TYPE_NAMES,
    DTypeError,
    format_dtype,
    is_float,
    is_integer,
    is_nested,
    is_numeric,
    is_orderable,
    is_temporal,
    is_timestamp,
    parse_dtype,
)

# --------------------------------------------------------------------------- scalars

CANONICAL_SCALARS: list[tuple[str, pa.DataType]] = [
    ("BOOLEAN", pa.bool_()),
    ("TINYINT", pa.int8()),
    ("SMALLINT", pa.int16()),
    ("INTEGER", pa.int32()),
    ("BIGINT", pa.int64()),
    ("UTINYINT", pa.uint8()),
    ("USMALLINT", pa.uint16()),
    ("UINTEGER", pa.uint32()),
    ("UBIGINT", pa.uint64()),
    ("FLOAT", pa.float32()),
    ("DOUBLE", pa.float64()),
    ("DECIMAL(18,3)", pa.decimal128(18, 3)),
    ("VARCHAR", pa.string()),
    ("BLOB", pa.binary()),
    ("DATE", pa.date32()),
    ("TIMESTAMP", pa.timestamp("us")),
    ("TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL_SCALARS)
def test_parse_canonical_scalar(text: str, expected: pa.DataType) -> None:
    assert parse_dtype(text) == expected


@pytest.mark.parametrize(("text", "expected"), CANONICAL_SCALARS)
def test_format_canonical_scalar(text: str, expected: pa.DataType) -> None:
    assert format_dtype(expected) == text


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("BOOL", "BOOLEAN"),
        ("INT", "INTEGER"),
        ("REAL", "FLOAT"),
        ("TEXT", "VARCHAR"),
        ("STRING", "VARCHAR"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"),
        ("DECIMAL", "DECIMAL(18,3)"),
        ("DECIMAL(10)", "DECIMAL(10,0)"),
    ],
)
def test_aliases_parse_to_the_canonical_type(alias: str, canonical: str) -> None:
    assert parse_dtype(alias) == parse_dtype(canonical)
    assert format_dtype(parse_dtype(alias)) == canonical


@pytest.mark.parametrize("text", ["bigint", "BigInt", "BIGINT", "  bigint\t", "\nBIGINT\n"])
def test_keywords_are_case_insensitive_and_whitespace_tolerant(text: str) -> None:
    assert parse_dtype(text) == pa.int64()


def test_timestamp_with_time_zone_is_case_insensitive_and_spacing_tolerant() -> None:
    assert parse_dtype("timestamp  With\ttime\nZONE") == pa.timestamp("us", tz="UTC")


def test_decimal_bounds() -> None:
    assert parse_dtype("DECIMAL(1,0)") == pa.decimal128(1, 0)
    assert parse_dtype("decimal( 38 , 38 )") == pa.decimal128(38, 38)


def test_known_type_names_are_the_canonical_scalar_names() -> None:
    assert "BIGINT" in KNOWN_TYPE_NAMES
    assert "DECIMAL" in KNOWN_TYPE_NAMES
    assert "INT" not in KNOWN_TYPE_NAMES
    assert len(set(KNOWN_TYPE_NAMES)) == len(KNOWN_TYPE_NAMES)
    for name in KNOWN_TYPE_NAMES:
        assert format_dtype(parse_dtype(name)).startswith(name)


# --------------------------------------------------------------------------- nested


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("INT[]", pa.list_(pa.int32()), "INTEGER[]"),
        ("BIGINT[][]", pa.list_(pa.list_(pa.int64())), "BIGINT[][]"),
        ("FLOAT[3]", pa.list_(pa.float32(), 3), "FLOAT[3]"),
        ("FLOAT[3][]", pa.list_(pa.list_(pa.float32(), 3)), "FLOAT[3][]"),
        ("real [ 3 ] [ ]", pa.list_(pa.list_(pa.float32(), 3)), "FLOAT[3][]"),
        (
            "STRUCT(a INT, b VARCHAR)",
            pa.struct([("a", pa.int32()), ("b", pa.string())]),
            "STRUCT(a INTEGER, b VARCHAR)",
        ),
        (
            "MAP(VARCHAR, DOUBLE)",
            pa.map_(pa.string(), pa.float64()),
            "MAP(VARCHAR, DOUBLE)",
        ),
        (
            "STRUCT(tags VARCHAR[], scores MAP(VARCHAR, DOUBLE))[]",
            pa.list_(
                pa.struct(
                    [
                        ("tags", pa.list_(pa.string())),
                        ("scores", pa.map_(pa.string(), pa.float64())),
                    ]
                )
            ),
            "STRUCT(tags VARCHAR[], scores MAP(VARCHAR, DOUBLE))[]",
        ),
        (
            "map(text, struct(x decimal(10,2), ts timestamp with time zone)[2])",
            pa.map_(
                pa.string(),
                pa.list_(
                    pa.struct([("x", pa.decimal128(10, 2)), ("ts", pa.timestamp("us", tz="UTC"))]),
                    2,
                ),
            ),
            "MAP(VARCHAR, STRUCT(x DECIMAL(10,2), ts TIMESTAMPTZ)[2])",
        ),
        (
            "STRUCT(int INT, map MAP(INT, INT))",
            pa.struct([("int", pa.int32()), ("map", pa.map_(pa.int32(), pa.int32()))]),
            "STRUCT(int INTEGER, map MAP(INTEGER, INTEGER))",
        ),
    ],
)
def test_nested_types(text: str, expected: pa.DataType, canonical: str) -> None:
    assert parse_dtype(text) == expected
    assert format_dtype(expected) == canonical


def test_struct_field_names_keep_their_case() -> None:
    assert parse_dtype("STRUCT(UserId INT)").field(0).name == "UserId"


def test_quoted_field_names() -> None:
    t = parse_dtype('STRUCT("first name" VARCHAR, "say ""hi""" INT, "größe" DOUBLE)')
    assert [t.field(i).name for i in range(t.num_fields)] == ["first name", 'say "hi"', "größe"]
    assert format_dtype(t) == ('STRUCT("first name" VARCHAR, "say ""hi""" INTEGER, "größe" DOUBLE)')


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("arrow", "expected"),
    [
        (pa.large_string(), "VARCHAR"),
        (pa.large_binary(), "BLOB"),
        (pa.large_list(pa.int64()), "BIGINT[]"),
        (pa.timestamp("s"), "TIMESTAMP"),
        (pa.timestamp("ns"), "TIMESTAMP"),
        (pa.timestamp("ms", tz="UTC"), "TIMESTAMPTZ"),
    ],
)
def test_format_accepts_large_and_other_unit_variants(arrow: pa.DataType, expected: str) -> None:
    assert format_dtype(arrow) == expected


@pytest.mark.parametrize(
    ("arrow", "message"),
    [
        (pa.timestamp("us", tz="Europe/Paris"), "only naive (TIMESTAMP) and UTC (TIMESTAMPTZ)"),
        (pa.dictionary(pa.int32(), pa.string()), "has no DuckDB-like dtype name"),
        (pa.time64("us"), "has no DuckDB-like dtype name"),
        (pa.decimal256(40, 2), "has no DuckDB-like dtype name"),
        (pa.struct([]), "STRUCT with no fields"),
        (pa.struct([("", pa.int32())]), "empty field name"),
        (pa.struct([("a", pa.int32()), ("a", pa.int64())]), "duplicate field names"),
        (pa.map_(pa.list_(pa.int32()), pa.int32()), "MAP with nested key type"),
    ],
)
def test_format_rejects_types_without_a_name(arrow: pa.DataType, message: str) -> None:
    with pytest.raises(DTypeError) as info:
        format_dtype(arrow)
    assert message in info.value.message
    assert info.value.column == 0


# --------------------------------------------------------------------------- errors


def _error(text: str) -> DTypeError:
    with pytest.raises(DTypeError) as info:
        parse_dtype(text)
    return info.value


def test_unknown_name_suggests_the_closest_known_name() -> None:
    error = _error("BIGIN")
    assert error.message == "unknown dtype 'BIGIN'"
    assert error.column == 0
    assert error.hint == "did you mean BIGINT?"
    assert str(error) == "unknown dtype 'BIGIN' — did you mean BIGINT?"


def test_unknown_name_inside_a_struct_points_at_the_name() -> None:
    error = _error("STRUCT(a INT, b varchr)")
    assert error.message == "unknown dtype 'varchr'"
    assert error.column == 16
    assert error.hint == "did you mean VARCHAR?"


def test_unknown_name_without_a_close_match_has_no_hint() -> None:
    error = _error("xyzzy")
    assert error.hint is None
    assert str(error) == "unknown dtype 'xyzzy'"


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_string(text: str) -> None:
    error = _error(text)
    assert error.message.startswith("empty dtype")
    assert error.column == 0


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("STRUCT(a INT", "unbalanced parentheses: '(' is never closed", 6),
        ("MAP(INT, STRUCT(a INT)", "unbalanced parentheses: '(' is never closed", 3),
        ("INT)", "unbalanced parentheses: ')' has no matching opening", 3),
        ("INT[", "unbalanced brackets: '[' is never closed", 3),
        ("INT[]]", "unbalanced brackets: ']' has no matching opening", 5),
        (
            "STRUCT(a INT[)",
            "unbalanced parentheses: ')' does not close '[' at column 12",
            13,
        ),
    ],
)
def test_unbalanced_parentheses(text: str, message: str, column: int) -> None:
    error = _error(text)
    assert (error.message, error.column) == (message, column)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("INT foo", "unexpected trailing text 'foo'", 4),
        ("INT, INT", "unexpected trailing text ','", 3),
        ("BIGINT 5", "unexpected trailing text '5'", 7),
        ("TIMESTAMPTZ WITH TIME ZONE", "unexpected trailing text 'WITH'", 12),
    ],
)
def test_trailing_garbage(text: str, message: str, column: int) -> None:
    error = _error(text)
    assert (error.message, error.column) == (message, column)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("DECIMAL(0,0)", "DECIMAL precision must be between 1 and 38, got 0", 8),
        ("DECIMAL(39,2)", "DECIMAL precision must be between 1 and 38, got 39", 8),
        (
            "DECIMAL(123456789012345678901234567890,1)",
            "DECIMAL precision must be between 1 and 38, got 123456789012345678901234567890",
            8,
        ),
        ("DECIMAL(5,6)", "DECIMAL scale must be between 0 and 5 (the precision), got 6", 10),
        ("DECIMAL(10,2,1)", "expected ')' after DECIMAL parameters but found ','", 12),
        ("DECIMAL(x)", "expected DECIMAL precision but found 'x'", 8),
        ("DECIMAL()", "expected DECIMAL precision but found ')'", 8),
    ],
)
def test_bad_decimal(text: str, message: str, column: int) -> None:
    error = _error(text)
    assert (error.message, error.column) == (message, column)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("STRUCT()", "STRUCT must have at least one field", 7),
        ("STRUCT", "expected '(' after STRUCT but found end of input", 6),
        ("STRUCT(a INT,)", "expected a field name but found ')'", 13),
        ("STRUCT(a)", "expected a type name but found ')'", 8),
        ("STRUCT(a INT, a BIGINT)", "duplicate field name 'a' in STRUCT", 14),
        ('STRUCT("" INT)', "STRUCT field names must not be empty", 7),
        ('STRUCT("a INT)', "unterminated quoted identifier", 7),
    ],
)
def test_bad_struct(text: str, message: str, column: int) -> None:
    error = _error(text)
    assert (error.message, error.column) == (message, column)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("INT[0]", "array size must be between 1 and 2147483647, got 0", 4),
        ("INT[2147483648]", "array size must be between 1 and 2147483647, got 2147483648", 4),
        ("INT[x]", "expected ']' or an array size but found 'x'", 4),
        ("INT[-1]", "unexpected character '-'", 4),
    ],
)
def test_bad_array_size(text: str, message: str, column: int) -> None:
    error = _error(text)
    assert (error.message, error.column) == (message, column)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("MAP(INT[], VARCHAR)", "MAP key must be a scalar type, got INTEGER[]", 4),
        (
            "MAP(STRUCT(a INT), VARCHAR)",
            "MAP key must be a scalar type, got STRUCT(a INTEGER)",
            4,
        ),
        ("MAP(INT)", "expected ',' between MAP key and value types but found ')'", 7),
        ("MAP(INT, INT, INT)", "expected ')' after MAP value type but found ','", 12),
        ("VARCHAR(10)", "VARCHAR takes no parameters", 7),
        ("TIMESTAMP(3)", "TIMESTAMP takes no parameters", 9),
        ("TIMESTAMP WITH ZONE", "expected TIME after TIMESTAMP WITH but found 'ZONE'", 15),
        ("INT$", "unexpected character '$'", 3),
        ("[]", "expected a type name but found '['", 0),
        ('"INTEGER"', "expected a type name but found '\"INTEGER\"'", 0),
    ],
)
def test_other_errors(text: str, message: str, column: int) -> None:
    error = _error(text)
    assert (error.message, error.column) == (message, column)


def test_error_is_a_value_error_and_survives_pickling() -> None:
    error = _error("BIGIN")
    assert isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.message, clone.column, clone.hint) == (error.message, error.column, error.hint)
    assert str(clone) == str(error)


# --------------------------------------------------------------------------- predicates


def test_predicates() -> None:
    ints = [pa.int8(), pa.int64(), pa.uint8(), pa.uint64()]
    floats = [pa.float32(), pa.float64()]
    decimal = pa.decimal128(10, 2)
    ts = [pa.timestamp("us"), pa.timestamp("us", tz="UTC")]
    nested = [pa.list_(pa.int32()), pa.list_(pa.int32(), 2), pa.struct([("a", pa.int32())])]
    nested.append(pa.map_(pa.string(), pa.int32()))

    assert all(is_integer(t) for t in ints)
    assert not any(is_integer(t) for t in [*floats, decimal, pa.string()])
    assert all(is_float(t) for t in floats)
    assert not any(is_float(t) for t in [*ints, decimal])
    assert all(is_numeric(t) for t in [*ints, *floats, decimal])
    assert not any(is_numeric(t) for t in [pa.string(), pa.bool_(), pa.date32(), *ts])
    assert all(is_timestamp(t) for t in ts)
    assert not is_timestamp(pa.date32())
    assert all(is_temporal(t) for t in [pa.date32(), *ts])
    assert not any(is_temporal(t) for t in [pa.int64(), pa.string()])
    orderable = [*ints, *floats, decimal, pa.string(), pa.large_string(), pa.binary()]
    orderable += [pa.bool_(), pa.date32(), *ts]
    assert all(is_orderable(t) for t in orderable)
    assert not any(is_orderable(t) for t in nested)
    assert all(is_nested(t) for t in nested)
    assert not any(is_nested(t) for t in orderable)


# --------------------------------------------------------------------------- properties

DECIMAL_TYPES = st.integers(1, 38).flatmap(
    lambda precision: st.builds(pa.decimal128, st.just(precision), st.integers(0, precision))
)
# One branch per scalar so decimals are as likely as any other single type.
SCALAR_TYPES = st.one_of(*[st.just(t) for _, t in CANONICAL_SCALARS], DECIMAL_TYPES)

# Characters that need quoting or escaping (the double quote twice as often).
AWKWARD_NAME_CHARS = st.sampled_from(
    ['"', '"', " ", "'", ",", "(", ")", "[", "]", "é", "ß", "名", "\t", "-", "1"]
)
FIELD_NAMES = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
    st.text(AWKWARD_NAME_CHARS | st.characters(codec="utf-8"), min_size=1, max_size=8),
)


def _structs(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
    fields = st.lists(
        st.tuples(FIELD_NAMES, children), min_size=1, max_size=4, unique_by=lambda f: f[0]
    )
    return fields.map(pa.struct)


def _extend(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
    return st.one_of(
        _structs(children),
        children.map(pa.list_),
        st.builds(pa.list_, children, st.integers(1, 16)),
        st.builds(pa.map_, SCALAR_TYPES, children),
    )


ARROW_TYPES = st.recursive(SCALAR_TYPES, _extend, max_leaves=8)


@settings(max_examples=300)
@given(FIELD_NAMES)
def test_any_field_name_round_trips(name: str) -> None:
    t = pa.struct([(name, pa.int32())])
    assert parse_dtype(format_dtype(t)) == t


@settings(max_examples=300)
@given(ARROW_TYPES)
def test_format_then_parse_round_trips(t: pa.DataType) -> None:
    assert parse_dtype(format_dtype(t)) == t


@settings(max_examples=300)
@given(ARROW_TYPES)
def test_formatting_a_parsed_canonical_string_is_stable(t: pa.DataType) -> None:
    canonical = format_dtype(t)
    assert format_dtype(parse_dtype(canonical)) == canonical


@settings(max_examples=100)
@given(ARROW_TYPES, st.sampled_from(["", " ", "  ", "\n"]))
def test_extra_whitespace_between_tokens_is_ignored(t: pa.DataType, pad: str) -> None:
    spaced = format_dtype(t)
    for punctuation in "()[],":
        spaced = spaced.replace(punctuation, f"{pad}{punctuation}{pad}")
    # Only safe when no quoted field name contains punctuation we just padded.
    if '"' not in spaced:
        assert parse_dtype(f"{pad}{spaced}{pad}") == t
