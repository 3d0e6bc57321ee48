"""The HTTP app's answers: strict-JSON responses, the error body `{"detail": ...}`, 422s that name
the field at fault (`loc`), and the checks on request text (valid Unicode, characters counted)."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from ..errors import DataError


class SafeJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: valid UTF-8 whatever text a client sent us
    (a lone surrogate echoed back in an error would fail the default UTF-8 encoding)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, detail: Any, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    return SafeJSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def bad_unicode(value: Any, loc: list) -> tuple[list, str] | None:
    """(loc, message) of the first string in `value` that is not valid Unicode (an unpaired
    surrogate, as JSON's "\\ud800" decodes to), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return loc, (
                f"not valid Unicode text: unpaired surrogate U+{ord(value[exc.start]):04X} at character "
                f"{exc.start}; send UTF-8 text"
            )
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = bad_unicode(key, [*loc, "(key)"]) or bad_unicode(item, [*loc, key])
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = bad_unicode(item, [*loc, index])
            if found:
                return found
    return None


def validation_error(loc: list, message: str) -> JSONResponse:
    return error_response(422, [{"type": "value_error", "loc": loc, "msg": message}])


INPUT_FIELD = re.compile(r"^input (\d+): (?:field '([^']+)')?")


def data_error(exc: DataError) -> JSONResponse:
    """A DataError of `parse_input` ("input 3: field 'text' must be ...") as a 422 naming the field."""
    message = str(exc)
    loc: list[Any] = ["body", "inputs"]
    match = INPUT_FIELD.match(message)
    if match:
        loc.append(int(match.group(1)))
        if match.group(2):
            loc.append(match.group(2))
    return validation_error(loc, message)


def characters(item: Any) -> int:
    if isinstance(item, str):
        return len(item)
    if isinstance(item, dict):
        return sum(characters(v) for v in item.values())
    if isinstance(item, list):
        return sum(characters(v) for v in item)
    return 0


def validation_errors(errors) -> list:
    """FastAPI's error list, with the echoed inputs only where they encode as strict JSON (an
    infinite number or an odd object in the input would fail the answer itself)."""
    try:
        encoded = jsonable_encoder(errors)
        json.dumps(encoded, allow_nan=False)
        return encoded
    except (TypeError, ValueError, UnicodeError):
        return [{k: jsonable_encoder(e.get(k)) for k in ("type", "loc", "msg")} for e in errors]
