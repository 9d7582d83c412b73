"""The seed-style handler answer: ``Response(status, payload, error)``.

Code written for the Go original (``Response{Status: OK|FAIL, Payload, Error}``) ports line by
line. On the wire, OK becomes the JSON-RPC ``result`` (the payload) and FAIL becomes an error
object with an *application* code (outside the spec's reserved -32768..-32000 range), the error
text as ``message`` and the payload, if any, as ``data``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from ._errors import ErrorCode

__all__ = ["DEFAULT_FAIL_CODE", "Response", "Status"]

#: The error code of a FAIL Response that names none: the first code past "no error".
DEFAULT_FAIL_CODE = 1

_new = object.__new__


class Status(enum.Enum):
    OK = "OK"
    FAIL = "FAIL"


#: Status.OK for hot paths: a module constant is read faster than an Enum class's attribute
#: (specs/performance.md).
OK: Final = Status.OK


@dataclass(slots=True, repr=False)
class Response:
    """What a handler answers; see the module docstring for the wire mapping.

    (Not frozen: a frozen dataclass is slower to build, on the hot path: specs/performance.md.)
    """

    status: Status = Status.OK
    payload: Any = None
    error: str = ""
    code: int = DEFAULT_FAIL_CODE

    def __post_init__(self) -> None:
        if self.status is OK:
            return
        if self.status is not Status.FAIL:
            raise TypeError(f"status must be Status.OK or Status.FAIL, not {self.status!r}")
        if ErrorCode.is_reserved(self.code):
            raise ValueError(
                f"application error code {self.code} is inside JSON-RPC's reserved range "
                "-32768..-32000; pick another"
            )

    @classmethod
    def ok(cls, payload: Any = None) -> Response:
        # Filled in slot by slot: calling the class (type.__call__, __init__, __post_init__)
        # is slower, and OK answers are the hot path (specs/performance.md).
        response = _new(cls)
        response.status = OK
        response.payload = payload
        response.error = ""
        response.code = DEFAULT_FAIL_CODE
        return response

    @classmethod
    def fail(cls, error: str, *, code: int = DEFAULT_FAIL_CODE, data: Any = None) -> Response:
        return cls(Status.FAIL, data, error, code)

    def __repr__(self) -> str:
        """As it would be built: an OK answer has no error code to show."""
        if self.status is OK:
            return f"Response.ok({self.payload!r})"
        data = "" if self.payload is None else f", data={self.payload!r}"
        return f"Response.fail({self.error!r}, code={self.code!r}{data})"
