"""One error family for the whole service, and its codes (the contract's), listed once.

Services and the frame parser (`protocol`) raise `DomainError(code, message)`; the JSON API, the
organizer forms and the WebSocket endpoints each map the code to their own form (HTTP status,
flash message, `error` frame). Messages say what was wrong and what would be right.
"""

from __future__ import annotations

# Codes of the WebSocket `error` frame (the contract's list), the first seven ...
INVALID_JSON = "invalid_json"
INVALID_MESSAGE = "invalid_message"
UNSUPPORTED_TYPE = "unsupported_type"
VALIDATION_ERROR = "validation_error"
FORBIDDEN = "forbidden"
INVALID_STATE = "invalid_state"
RATE_LIMITED = "rate_limited"
FRAME_ERRORS = frozenset(
    {INVALID_JSON, INVALID_MESSAGE, UNSUPPORTED_TYPE, VALIDATION_ERROR, FORBIDDEN, INVALID_STATE, RATE_LIMITED}
)
# ... and of the JSON API and the forms besides.
NOT_FOUND = "not_found"
UNAUTHORIZED = "unauthorized"
CONFLICT = "conflict"
UNAVAILABLE = "unavailable"

# How the JSON API and the organizer pages answer each code.
HTTP_STATUS = {
    INVALID_JSON: 400,
    INVALID_MESSAGE: 400,
    UNSUPPORTED_TYPE: 400,
    VALIDATION_ERROR: 400,
    UNAUTHORIZED: 401,
    FORBIDDEN: 403,
    NOT_FOUND: 404,
    INVALID_STATE: 409,
    CONFLICT: 409,
    RATE_LIMITED: 429,
    UNAVAILABLE: 503,
}


class DomainError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"DomainError({self.code!r}, {self.message!r})"


def invalid(message: str) -> DomainError:
    return DomainError(VALIDATION_ERROR, message)


def forbidden(message: str) -> DomainError:
    return DomainError(FORBIDDEN, message)


def invalid_state(message: str) -> DomainError:
    return DomainError(INVALID_STATE, message)


def not_found(message: str) -> DomainError:
    return DomainError(NOT_FOUND, message)
