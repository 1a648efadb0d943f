"""Parse DuckDB-like type names into pyarrow types and format them back."""

import difflib
import enum
import re
from dataclasses import dataclass
from typing import NoReturn

import pyarrow as pa

__all__ = [
    "KNOWN_TYPE_NAMES",
    "DTypeError",
    "format_dtype",
    "is_float",
    "is_integer",
    "is_nested",
    "is_numeric",
    "is_orderable",
    "is_temporal",
    "is_timestamp",
    "parse_dtype",
]


# --------------------------------------------------------------------------- errors


class DTypeError(ValueError):
    """A type name that cannot be parsed, or an Arrow type that cannot be named.

    ``column`` is the 0-based character offset in the parsed text where the problem
    is (always 0 for errors raised by :func:`format_dtype`); ``hint`` is an optional
    suggestion such as ``"did you mean BIGINT?"``, appended to ``str()`` after a dash.
    """

    def __init__(self, message: str, column: int = 0, hint: str | None = None) -> None:
        self.message = message
        self.column = column
        self.hint = hint
        super().__init__(message, column, hint)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message


# --------------------------------------------------------------------------- names

_DEFAULT_DECIMAL_PRECISION = 18
_DEFAULT_DECIMAL_SCALE = 3
_MAX_DECIMAL_PRECISION = 38
_MAX_ARRAY_SIZE = 2**31 - 1

# Canonical name -> Arrow type for every scalar spelled as a single keyword.
_CANONICAL_SCALARS: dict[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(),
    "TINYINT": pa.int8(),
    "SMALLINT": pa.int16(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "UTINYINT": pa.uint8(),
    "USMALLINT": pa.uint16(),
    "UINTEGER": pa.uint32(),
    "UBIGINT": pa.uint64(),
    "FLOAT": pa.float32(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "BLOB": pa.binary(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
}

_ALIASES: dict[str, str] = {
    "BOOL": "BOOLEAN",
    "INT": "INTEGER",
    "REAL": "FLOAT",
    "TEXT": "VARCHAR",
    "STRING": "VARCHAR",
}

KNOWN_TYPE_NAMES: tuple[str, ...] = (
    "BOOLEAN",
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
    "VARCHAR",
    "BLOB",
    "DATE",
    "TIMESTAMP",
    "TIMESTAMPTZ",
)

_NESTED_KEYWORDS: tuple[str, ...] = ("STRUCT", "MAP")

# Every spelling the parser accepts as a type keyword; used for "did you mean".
_ALL_KEYWORDS: tuple[str, ...] = KNOWN_TYPE_NAMES + tuple(_ALIASES) + _NESTED_KEYWORDS

_SCALAR_NAMES: dict[pa.DataType, str] = {t: name for name, t in _CANONICAL_SCALARS.items()}
_SCALAR_NAMES[pa.large_string()] = "VARCHAR"
_SCALAR_NAMES[pa.large_binary()] = "BLOB"

_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --------------------------------------------------------------------------- tokenizer


class _Kind(enum.Enum):
    NAME = "name"
    QUOTED = "quoted identifier"
    INT = "integer"
    LPAREN = "'('"
    RPAREN = "')'"
    LBRACKET = "'['"
    RBRACKET = "']'"
    COMMA = "','"
    END = "end of input"


_PUNCTUATION: dict[str, _Kind] = {
    "(": _Kind.LPAREN,
    ")": _Kind.RPAREN,
    "[": _Kind.LBRACKET,
    "]": _Kind.RBRACKET,
    ",": _Kind.COMMA,
}

_TOKEN_RE = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<name>[^\W\d]\w*)
    | (?P<int>[0-9]+)
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<punct>[()\[\],])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # the exact source slice
    value: str  # the name, the unescaped quoted identifier, or the digits
    column: int

    def describe(self) -> str:
        """How to name this token in an error message."""
        if self.kind is _Kind.END:
            return "end of input"
        return f"'{self.text}'"


def _tokenize(text: str) -> list[_Token]:
    """Split ``text`` into tokens ending with an END token; raise DTypeError on bad input."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            _raise_bad_character(text, pos)
        group = match.lastgroup
        raw = match.group()
        if group == "name":
            tokens.append(_Token(_Kind.NAME, raw, raw, pos))
        elif group == "int":
            tokens.append(_Token(_Kind.INT, raw, raw, pos))
        elif group == "quoted":
            tokens.append(_Token(_Kind.QUOTED, raw, raw[1:-1].replace('""', '"'), pos))
        elif group == "punct":
            tokens.append(_Token(_PUNCTUATION[raw], raw, raw, pos))
        pos = match.end()
    tokens.append(_Token(_Kind.END, "", "", len(text)))
    return tokens


def _raise_bad_character(text: str, pos: int) -> NoReturn:
    if text[pos] == '"':
        raise DTypeError("unterminated quoted identifier", pos)
    raise DTypeError(f"unexpected character '{text[pos]}'", pos)


_OPENERS: dict[_Kind, _Kind] = {_Kind.LPAREN: _Kind.RPAREN, _Kind.LBRACKET: _Kind.RBRACKET}
_CLOSERS: dict[_Kind, _Kind] = {close: open_ for open_, close in _OPENERS.items()}


def _check_balanced(tokens: list[_Token]) -> None:
    """Raise DTypeError at the first unmatched or mismatched parenthesis or bracket."""
    stack: list[_Token] = []
    for token in tokens:
        if token.kind in _OPENERS:
            stack.append(token)
        elif token.kind in _CLOSERS:
            if not stack:
                raise DTypeError(
                    f"{_unbalanced(token)}: '{token.text}' has no matching opening", token.column
                )
            opener = stack.pop()
            if _OPENERS[opener.kind] is not token.kind:
                raise DTypeError(
                    f"{_unbalanced(token)}: '{token.text}' does not close "
                    f"'{opener.text}' at column {opener.column}",
                    token.column,
                )
    if stack:
        opener = stack[-1]
        raise DTypeError(f"{_unbalanced(opener)}: '{opener.text}' is never closed", opener.column)


def _unbalanced(token: _Token) -> str:
    if token.kind in (_Kind.LPAREN, _Kind.RPAREN):
        return "unbalanced parentheses"
    return "unbalanced brackets"


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive-descent parser over the token list of one type name.

    Grammar (keywords case-insensitive)::

        type     := base suffix*
        suffix   := '[' ']' | '[' INT ']'
        base     := STRUCT '(' field (',' field)* ')'
                  | MAP '(' type ',' type ')'
                  | DECIMAL [ '(' INT [',' INT] ')' ]
                  | TIMESTAMP [ WITH TIME ZONE ]
                  | scalar-keyword
        field    := (NAME | QUOTED) type
    """

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    # -- token helpers

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind is not _Kind.END:
            self._index += 1
        return token

    def _accept(self, kind: _Kind) -> _Token | None:
        if self._peek().kind is kind:
            return self._advance()
        return None

    def _expect(self, kind: _Kind, what: str | None = None) -> _Token:
        token = self._peek()
        if token.kind is not kind:
            raise DTypeError(
                f"expected {what or kind.value} but found {token.describe()}", token.column
            )
        return self._advance()

    def _expect_keyword(self, keyword: str, context: str) -> _Token:
        token = self._peek()
        if token.kind is not _Kind.NAME or token.value.upper() != keyword:
            raise DTypeError(
                f"expected {keyword} after {context} but found {token.describe()}", token.column
            )
        return self._advance()

    # -- grammar

    def parse(self) -> pa.DataType:
        dtype = self._type()
        trailing = self._peek()
        if trailing.kind is not _Kind.END:
            raise DTypeError(f"unexpected trailing text {trailing.describe()}", trailing.column)
        return dtype

    def _type(self) -> pa.DataType:
        return self._suffixes(self._base())

    def _suffixes(self, dtype: pa.DataType) -> pa.DataType:
        while self._accept(_Kind.LBRACKET):
            size = self._accept(_Kind.INT)
            self._expect(_Kind.RBRACKET, "']' or an array size")
            dtype = (
                pa.list_(dtype)
                if size is None
                else pa.list_(dtype, _bounded_int(size, 1, _MAX_ARRAY_SIZE, "array size"))
            )
        return dtype

    def _base(self) -> pa.DataType:
        token = self._peek()
        if token.kind is not _Kind.NAME:
            raise DTypeError(f"expected a type name but found {token.describe()}", token.column)
        self._advance()
        keyword = _ALIASES.get(token.value.upper(), token.value.upper())
        if keyword == "STRUCT":
            return self._struct()
        if keyword == "MAP":
            return self._map()
        if keyword == "DECIMAL":
            return self._decimal()
        if keyword == "TIMESTAMP":
            return self._timestamp()
        if keyword in _CANONICAL_SCALARS:
            self._reject_parameters(keyword)
            return _CANONICAL_SCALARS[keyword]
        raise _unknown_name(token)

    def _reject_parameters(self, keyword: str) -> None:
        token = self._peek()
        if token.kind is _Kind.LPAREN:
            raise DTypeError(f"{keyword} takes no parameters", token.column)

    def _struct(self) -> pa.DataType:
        self._expect(_Kind.LPAREN, "'(' after STRUCT")
        closing = self._peek()
        if closing.kind is _Kind.RPAREN:
            raise DTypeError("STRUCT must have at least one field", closing.column)
        fields: list[pa.Field] = []
        seen: set[str] = set()
        while True:
            name_token, field = self._field()
            if field.name in seen:
                raise DTypeError(
                    f"duplicate field name '{field.name}' in STRUCT", name_token.column
                )
            seen.add(field.name)
            fields.append(field)
            if not self._accept(_Kind.COMMA):
                break
        self._expect(_Kind.RPAREN, "',' or ')'")
        return pa.struct(fields)

    def _field(self) -> tuple[_Token, pa.Field]:
        token = self._peek()
        if token.kind not in (_Kind.NAME, _Kind.QUOTED):
            raise DTypeError(f"expected a field name but found {token.describe()}", token.column)
        self._advance()
        if token.value == "":
            raise DTypeError("STRUCT field names must not be empty", token.column)
        return token, pa.field(token.value, self._type())

    def _map(self) -> pa.DataType:
        self._expect(_Kind.LPAREN, "'(' after MAP")
        key_start = self._peek()
        key = self._type()
        if is_nested(key):
            raise DTypeError(
                f"MAP key must be a scalar type, got {format_dtype(key)}", key_start.column
            )
        self._expect(_Kind.COMMA, "',' between MAP key and value types")
        value = self._type()
        self._expect(_Kind.RPAREN, "')' after MAP value type")
        return pa.map_(key, value)

    def _decimal(self) -> pa.DataType:
        if not self._accept(_Kind.LPAREN):
            return pa.decimal128(_DEFAULT_DECIMAL_PRECISION, _DEFAULT_DECIMAL_SCALE)
        precision_token = self._expect(_Kind.INT, "DECIMAL precision")
        precision = _bounded_int(precision_token, 1, _MAX_DECIMAL_PRECISION, "DECIMAL precision")
        scale = 0
        if self._accept(_Kind.COMMA):
            scale_token = self._expect(_Kind.INT, "DECIMAL scale")
            scale = _bounded_int(scale_token, 0, precision, "DECIMAL scale", " (the precision)")
        self._expect(_Kind.RPAREN, "')' after DECIMAL parameters")
        return pa.decimal128(precision, scale)

    def _timestamp(self) -> pa.DataType:
        with_token = self._peek()
        if with_token.kind is _Kind.NAME and with_token.value.upper() == "WITH":
            self._advance()
            self._expect_keyword("TIME", "TIMESTAMP WITH")
            self._expect_keyword("ZONE", "TIMESTAMP WITH TIME")
            return _CANONICAL_SCALARS["TIMESTAMPTZ"]
        self._reject_parameters("TIMESTAMP")
        return _CANONICAL_SCALARS["TIMESTAMP"]


def _bounded_int(token: _Token, low: int, high: int, what: str, high_note: str = "") -> int:
    """The value of INT ``token``, or DTypeError at the token if outside ``low..high``."""
    digits = token.value.lstrip("0") or "0"
    # Compare lengths first so absurdly long literals never reach int().
    if len(digits) > len(str(high)) or not low <= int(digits) <= high:
        raise DTypeError(
            f"{what} must be between {low} and {high}{high_note}, got {token.value}", token.column
        )
    return int(digits)


def _unknown_name(token: _Token) -> DTypeError:
    matches = difflib.get_close_matches(token.value.upper(), _ALL_KEYWORDS, n=1)
    hint = f"did you mean {matches[0]}?" if matches else None
    return DTypeError(f"unknown dtype '{token.value}'", token.column, hint)


def parse_dtype(text: str) -> pa.DataType:
    """Parse a DuckDB-like type name such as ``STRUCT(a INT, b VARCHAR[])`` into a pyarrow type.

    Keywords are case-insensitive and whitespace between tokens is ignored; STRUCT
    field names keep their spelling (double-quote them to use any characters, writing
    an inner ``"`` as ``""``). Plain ``DECIMAL`` means ``DECIMAL(18,3)`` and
    ``DECIMAL(p)`` means ``DECIMAL(p,0)``.

    Raises:
        DTypeError: if ``text`` is empty, unbalanced, names an unknown type, has
            out-of-range parameters, an empty or duplicate-field STRUCT, a nested
            MAP key, or trailing text. ``column`` locates the problem in ``text``.
    """
    if not text.strip():
        raise DTypeError("empty dtype: expected a type name such as BIGINT", 0)
    tokens = _tokenize(text)
    _check_balanced(tokens)
    return _Parser(tokens).parse()


# --------------------------------------------------------------------------- formatter


def format_dtype(t: pa.DataType) -> str:
    """Return the canonical DuckDB-like name of ``t``; it always parses back with parse_dtype.

    ``parse_dtype(format_dtype(t)) == t`` for every type parse_dtype produces. Large
    string/binary/list types format as their regular counterparts and timestamps of
    any unit as TIMESTAMP (naive) or TIMESTAMPTZ (UTC); field nullability and metadata
    are not represented.

    Raises:
        DTypeError: if ``t`` has no DuckDB-like name (e.g. a non-UTC time zone, a
            dictionary type, a STRUCT with no, empty or duplicate field names, or a
            MAP with a nested key), with ``column`` 0.
    """
    if pa.types.is_timestamp(t):
        return _format_timestamp(t)
    if pa.types.is_decimal128(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{format_dtype(t.value_type)}[]"
    if pa.types.is_fixed_size_list(t):
        return f"{format_dtype(t.value_type)}[{t.list_size}]"
    if pa.types.is_struct(t):
        return _format_struct(t)
    if pa.types.is_map(t):
        return _format_map(t)
    name = _SCALAR_NAMES.get(t)
    if name is None:
        raise DTypeError(f"Arrow type {t} has no DuckDB-like dtype name")
    return name


def _format_timestamp(t: pa.TimestampType) -> str:
    if t.tz is None:
        return "TIMESTAMP"
    if t.tz == "UTC":
        return "TIMESTAMPTZ"
    raise DTypeError(
        f"Arrow type {t} has no DuckDB-like dtype name: only naive (TIMESTAMP) "
        "and UTC (TIMESTAMPTZ) timestamps are supported"
    )


def _format_struct(t: pa.StructType) -> str:
    if t.num_fields == 0:
        raise DTypeError("cannot format a STRUCT with no fields")
    names = [t.field(i).name for i in range(t.num_fields)]
    if "" in names:
        raise DTypeError("cannot format a STRUCT with an empty field name")
    if len(set(names)) != len(names):
        raise DTypeError(f"cannot format a STRUCT with duplicate field names: {names}")
    parts = [
        f"{_quote_identifier(t.field(i).name)} {format_dtype(t.field(i).type)}"
        for i in range(t.num_fields)
    ]
    return f"STRUCT({', '.join(parts)})"


def _format_map(t: pa.MapType) -> str:
    if is_nested(t.key_type):
        raise DTypeError(f"cannot format a MAP with nested key type {t.key_type}")
    return f"MAP({format_dtype(t.key_type)}, {format_dtype(t.item_type)})"


def _quote_identifier(name: str) -> str:
    if _PLAIN_IDENTIFIER.fullmatch(name):
        return name
    escaped = name.replace('"', '""')
    return f'"{escaped}"'


# --------------------------------------------------------------------------- predicates


def is_integer(t: pa.DataType) -> bool:
    """True for signed and unsigned integer types."""
    return pa.types.is_integer(t)


def is_float(t: pa.DataType) -> bool:
    """True for floating-point types."""
    return pa.types.is_floating(t)


def is_numeric(t: pa.DataType) -> bool:
    """True for integer, floating-point and decimal types."""
    return is_integer(t) or is_float(t) or pa.types.is_decimal(t)


def is_timestamp(t: pa.DataType) -> bool:
    """True for timestamps of any unit, naive or zoned."""
    return pa.types.is_timestamp(t)


def is_temporal(t: pa.DataType) -> bool:
    """True for DATE (date32) and timestamp types."""
    return pa.types.is_date32(t) or is_timestamp(t)


def is_orderable(t: pa.DataType) -> bool:
    """True for types with a natural total order: numeric, string, binary, bool, date, timestamp."""
    return (
        is_numeric(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_boolean(t)
        or is_temporal(t)
    )


def is_nested(t: pa.DataType) -> bool:
    """True for list, fixed-size list, struct, map and other container types."""
    return pa.types.is_nested(t)
