"""Control characters in text: which texts of a value (a pydantic model or plain JSON data,
keys too) hold one. Pure (pydantic and re only): the web layer refuses request bodies with
it, and imports that check their input entry by entry use the same rule."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo


class _Multiline:
    """Marker of `MultilineText`."""

    def __repr__(self) -> str:
        return "MULTILINE"


MULTILINE = _Multiline()
# Free text that may span lines (notes, descriptions): line feeds and tabs are allowed in it.
# Every other text (names, emails, addresses, codes) holds no control character at all.
MultilineText = Annotated[str, MULTILINE]

# C0 controls, DEL and C1 controls. CR/LF in a name ends up in mail headers, CSV exports and
# log lines; PostgreSQL text and jsonb cannot hold NUL at all.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LF_TAB = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def control_characters(
    value: Any, path: str = "", *, multiline: bool = False
) -> Iterator[tuple[str, str]]:
    """(path, first control character) of every text in `value` holding one: string values
    and keys, nested in models, mappings and lists (a bad key is reported under its own path).
    `MultilineText` fields (and `multiline=True`) may hold line feeds and tabs."""
    if isinstance(value, BaseModel):
        for name, multiline_field in _text_fields(type(value)):
            yield from control_characters(
                getattr(value, name), _join(path, name), multiline=multiline_field
            )
        for name, item in (value.model_extra or {}).items():
            yield from control_characters(item, _join(path, name))
    elif isinstance(value, str):
        match = (_CONTROL_BUT_LF_TAB if multiline else CONTROL).search(value)
        if match:
            yield path, match.group()
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from control_characters(key, _join(path, str(key)))
            yield from control_characters(item, _join(path, str(key)), multiline=multiline)
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from control_characters(item, _join(path, str(index)), multiline=multiline)


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


@functools.cache
def _text_fields(model: type[BaseModel]) -> tuple[tuple[str, bool], ...]:
    """(name, may span lines) of each field of `model`, worked out once per model (it
    cost a millisecond of every request body)."""
    return tuple((name, _is_multiline(info)) for name, info in model.model_fields.items())


def _is_multiline(info: FieldInfo) -> bool:
    # `MultilineText` as the field's type lands in `metadata`; nested (`MultilineText | None`,
    # `list[MultilineText]`) it stays in the annotation
    return any(item is MULTILINE for item in info.metadata) or _mentions_multiline(info.annotation)


def _mentions_multiline(annotation: Any) -> bool:
    return any(arg is MULTILINE or _mentions_multiline(arg) for arg in get_args(annotation))
