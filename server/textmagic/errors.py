"""What went wrong with a TextMagic request, in words the model (and its user) can act on.

Messages never carry credentials: they are built from the status, TextMagic's error body and the base URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2

from server.textmagic.untrusted import neutralise

_MAX_ERROR_TEXT = 300


class TextMagicError(Exception):
    """A TextMagic call failed; the message says why and what to do next.

    ``http_status``: the HTTP status TextMagic answered with, the only word on what happened (a 404 alone
    means gone); ``code``: the code its error body gave, which may say anything.
    """

    def __init__(self, message: str, *, http_status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code


class UncertainOutcome(TextMagicError):
    """A request that changes data failed after it may have reached TextMagic: it may have been carried out."""


class RateLimited(TextMagicError):
    """TextMagic asked to hold off (429 with Retry-After) for longer than a call may wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"TextMagic's rate limit was reached (429) and it asked to wait {seconds:.0f} s more, longer than a call "
            f"waits (TEXTMAGIC_RETRY_BUDGET). This is temporary: try again in {seconds:.0f} s.",
            http_status=429,
        )


@dataclass(frozen=True)
class Failure:
    """One attempt that did not give a usable answer, classified for the retry loop.

    ``reached``: the request may have arrived at TextMagic (so it may have been carried out);
    ``retryable``: trying again could help; ``problem``: what went wrong, for the final message;
    ``answer``: TextMagic's answer, when one came; ``retry_after``: the wait TextMagic asked for;
    ``throttled``: TextMagic refused it for the account's rate limit (429), not carried out.
    """

    reached: bool
    problem: str
    retryable: bool = True
    answer: httpx2.Response | None = None
    retry_after: float | None = None
    throttled: bool = False


def status_error(response: httpx2.Response, subject: int | None) -> TextMagicError:
    """The error for a final (or finally given up) HTTP error status from TextMagic."""
    status = response.status_code
    code, detail, fields, common = _error_body(response)
    said = f"TextMagic said: {detail}" if detail else "TextMagic gave no details"
    if status == 401:
        message = (
            f"TextMagic refused the credentials (401; {said}). Check TEXTMAGIC_USERNAME and TEXTMAGIC_API_KEY: "
            "the key must be an API v2 key belonging to that username."
        )
    elif status == 403:
        message = f"TextMagic denied access (403; {said}). The user lacks the right for this operation."
    elif status == 404 and subject is not None:
        message = (
            f"Session {subject} does not exist on this account (404). "
            "Use get_all_message_sessions to find valid session ids."
        )
    elif status in (400, 422):
        problems = [f"{name}: {'; '.join(msgs)}" for name, msgs in fields.items()] + common
        listed = " | ".join(problems) if problems else detail or "no details given"
        message = f"TextMagic rejected the request ({status}): {listed}."
    elif status == 429:
        message = (
            "TextMagic's rate limit was reached (429). This is temporary: wait a few seconds, then try again."
        )
    elif status >= 500:
        what = "is in maintenance" if status == 503 else "had an internal error"
        message = f"TextMagic {what} ({status}; {said}). This is temporary: try again in a minute."
    else:
        message = f"TextMagic answered HTTP {status} ({said})."
    return TextMagicError(message, http_status=status, code=code)


def given_up(
    failure: Failure, *, attempts: int, elapsed: float, subject: int | None, base_url: str, proxy: str | None
) -> TextMagicError:
    """The error once retrying stopped: what failed, how often it was tried, whether trying later makes sense.

    ``proxy``: the proxy TextMagic is reached through, without its credentials, if one is used.
    """
    tries = f"Tried {attempts} time{'s' if attempts > 1 else ''} over {elapsed:.1f} s."
    if failure.answer is not None:
        error = status_error(failure.answer, subject)
        later = (
            f" TextMagic asked to wait {failure.retry_after:.0f} s (Retry-After)."
            if failure.retry_after
            else ""
        )
        return TextMagicError(f"{error} {tries}{later}", http_status=error.http_status, code=error.code)
    if not failure.retryable:
        return TextMagicError(failure.problem)
    if not failure.reached:
        via = f" through the proxy {proxy}" if proxy else ""
        check = " and the proxy (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY)" if proxy else ""
        return TextMagicError(
            f"Could not reach TextMagic at {base_url}{via}: {failure.problem}. {tries} The request never reached "
            f"TextMagic, so trying again later is safe. Check TEXTMAGIC_BASE_URL, the network connection{check}."
        )
    return TextMagicError(
        f"TextMagic at {base_url} is not answering: {failure.problem}. {tries} This is usually temporary: try "
        "again in a minute."
    )


def maybe_carried_out(failure: Failure, base_url: str) -> UncertainOutcome:
    return UncertainOutcome(
        f"TextMagic at {base_url} failed after the request was sent ({failure.problem}); it may or may not have "
        "been carried out, so it was not sent again."
    )


def unconfirmed(method: str, what: str, base_url: str) -> UncertainOutcome:
    return UncertainOutcome(
        f"TextMagic at {base_url} answered the {method} that deletes with {what}, not a confirmation: something "
        "between this server and TextMagic (a captive portal, a proxy) may have answered instead, so the delete "
        "may not have been carried out. It was not sent again."
    )


def unreadable(method: str, path: str, problems: list[str]) -> TextMagicError:
    return TextMagicError(
        f"TextMagic answered {method} {path} with a body this server cannot read (problem at: "
        f"{', '.join(problems[:5])}). Try again; if it persists, TextMagic's API may have changed and this server "
        "needs an update."
    )


def _error_body(response: httpx2.Response) -> tuple[int | None, str, dict[str, list[str]], list[str]]:
    """Read TextMagic's error body (code, message, errors.fields, errors.common), tolerating any shape."""
    try:
        body: Any = response.json()
    except ValueError:
        return None, "", {}, []
    if not isinstance(body, dict):
        return None, "", {}, []
    code = body.get("code")
    errors = body.get("errors")
    errors = errors if isinstance(errors, dict) else {}
    raw_fields = errors.get("fields")
    raw_common = errors.get("common")
    fields = {
        _clip(name): [_clip(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
        for name, msgs in (raw_fields.items() if isinstance(raw_fields, dict) else ())
    }
    common = [_clip(m) for m in raw_common] if isinstance(raw_common, list) else []
    return (code if isinstance(code, int) else None), _clip(body.get("message")), fields, common


def _clip(value: object) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    text = text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"
    return neutralise(text)
