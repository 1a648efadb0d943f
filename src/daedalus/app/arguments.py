"""A use case's arguments, checked once, against the JSON schema every surface publishes.

`check_arguments(case, arguments)` finds every violation (an unknown or a missing argument,
a value the schema refuses, a string holding NUL or a lone surrogate) and raises
`ArgumentsError` listing them; otherwise it returns the arguments as the use case takes them
(a JSON number like 5.0 passes an integer schema, and becomes the int 5). Surfaces word the
violations for their callers: `Violation.sentence()` ("limit must be at most 1000") or
`Violation.predicate()` ("is more than the maximum of 1000"), from one table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from daedalus.app.clip import clip, clip_text
from daedalus.app.errors import AppError

if TYPE_CHECKING:  # the application module imports this one
    from daedalus.app.application import UseCase

__all__ = ["ArgumentsError", "Violation", "check_arguments", "violations"]

_TEXT = "must be text without NUL or lone surrogate characters"

#: rule -> (what a value must be, what a value breaking the rule is); {0} is the rule's value
#: (a type, a bound, the known names), {1} the same joined by commas.
_PHRASES: dict[str, tuple[str, str]] = {
    "type": ("must be of type {0}", "is not of type {0!r}"),
    "pattern": ("must match {0}", "does not match {0!r}"),
    "format": ("must be a valid {0}", "is not a {0!r}"),
    "enum": ("must be one of {1}", "is not one of {0!r}"),
    "minimum": ("must be at least {0}", "is less than the minimum of {0}"),
    "maximum": ("must be at most {0}", "is more than the maximum of {0}"),
    "minLength": ("must have at least {0} character(s)", "is shorter than {0} character(s)"),
    "maxLength": ("must have at most {0} characters", "is longer than {0} characters"),
    "text": (_TEXT, _TEXT),
    "missing": ("is required", "is required"),
    "unknown": ("is not an argument (known: {1})", "is not an argument (known: {1})"),
}


@attrs.frozen
class Violation:
    """One argument at fault: its name (None: the arguments as a whole), the rule it breaks
    (`unknown`, `missing`, `text` or the JSON-schema keyword) and the rule's value."""

    field: str | None
    rule: str
    expected: Any = None
    #: The schema's own words, for a rule without a phrase of ours (never the value itself).
    detail: str = ""
    #: The argument is a date (YYYY-MM-DD): a pattern or format violation says so.
    date: bool = False

    def _phrase(self, which: int) -> str | None:
        phrases = _PHRASES.get(self.rule)
        if phrases is None:
            return None
        expected = self.expected
        joined = ", ".join(map(str, expected)) if isinstance(expected, list | tuple) else ""
        return phrases[which].format(expected, joined or "none")

    def sentence(self) -> str:
        """The violation as a sentence naming the argument: `limit must be at most 1000`."""
        field = self.field or "arguments"
        if self.date and self.rule in ("pattern", "format"):
            return f"{field} must be a date YYYY-MM-DD"
        phrase = self._phrase(0)
        return f"{field}: {clip(self.detail)}" if phrase is None else f"{field} {phrase}"

    def predicate(self) -> str:
        """What is wrong with the argument, without its name: `is more than the maximum of
        1000`."""
        phrase = self._phrase(1)
        return clip_text(self.detail) if phrase is None else phrase


class ArgumentsError(AppError):
    """Arguments a use case refuses: kind `invalid_argument`, every violation in
    `violations` (the first one's field in `data["field"]`)."""

    def __init__(self, case: UseCase, found: list[Violation]) -> None:
        self.case = case
        self.violations = found
        listed = "; ".join(v.sentence() for v in found)
        super().__init__(
            "invalid_argument",
            f"invalid arguments for {case.method}: {listed}",
            {"field": found[0].field, "errors": [attrs.asdict(v) for v in found]},
        )


_VALIDATORS: dict[str, Any] = {}


def _validator(case: UseCase) -> Any:
    validator = _VALIDATORS.get(case.name)
    if validator is None:
        # Imported on first use: importing daedalus stays light.
        from jsonschema import Draft202012Validator

        validator = Draft202012Validator(
            case.input_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        _VALIDATORS[case.name] = validator
    return validator


def _plain_text(value: str) -> bool:
    """No NUL and no lone surrogate: no name, day or path holds one (JSON can carry both), and
    paths, SQLite and UTF-8 encoders fail on them deep inside a use case."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def violations(case: UseCase, arguments: dict[str, Any]) -> list[Violation]:
    """Every violation of `arguments`: unknown arguments (in the order given), missing ones,
    then schema violations and text with NUL or a lone surrogate (in the parameters' order)."""
    names = [p.name for p in case.params]
    known = tuple(names)
    found = [Violation(name, "unknown", known) for name in arguments if name not in names]
    found += [
        Violation(p.name, "missing") for p in case.params if p.required and p.name not in arguments
    ]
    schemas = {p.name: p.schema for p in case.params}
    by_field: list[Violation] = []
    for error in _validator(case).iter_errors(arguments):
        if error.validator in ("required", "additionalProperties"):
            continue  # found above, by name
        field = str(error.path[0]) if error.path else None
        schema = schemas.get(field or "", {})
        by_field.append(
            Violation(
                field,
                str(error.validator),
                error.validator_value,
                # jsonschema's message repeats the (maybe huge) value: kept for an odd rule only.
                "" if str(error.validator) in _PHRASES else clip_text(error.message),
                schema.get("format") == "date",
            )
        )
    order = {name: i for i, name in enumerate(names)}
    by_field.sort(key=lambda v: order.get(v.field or "", len(order)))
    found += by_field
    found += [
        Violation(name, "text")
        for name in names
        if isinstance(arguments.get(name), str) and not _plain_text(arguments[name])
    ]
    return found


def check_arguments(case: UseCase, arguments: dict[str, Any]) -> dict[str, Any]:
    """`arguments` as the use case takes them; raises ArgumentsError listing every violation."""
    found = violations(case, arguments)
    if found:
        raise ArgumentsError(case, found)
    out = dict(arguments)
    for param in case.params:
        # A JSON number like 5.0 passes an integer schema, but the use cases expect an int.
        if param.schema.get("type") == "integer" and isinstance(out.get(param.name), float):
            out[param.name] = int(out[param.name])
    return out
