"""An ``http`` template: the request Argo's agent makes, made by the runner itself.

Written from workflow/executor/agent.go (v4.1.2) ``executeHTTPTemplate`` and
``executeHTTPTemplateRequest``, and docs/http-template.md:

- ``method`` (Go's empty method is GET), ``url``, ``body`` (or ``bodyFrom.bytes``, base64 in
  YAML as encoding/json writes ``[]byte``), ``headers``: each ``value``, or the Secret key
  ``valueFrom.secretKeyRef`` names (found locally as pods find theirs, and redacted); a
  ``Host`` header sets the request's host. ``insecureSkipVerify`` skips TLS verification.
- ``timeoutSeconds`` bounds the whole request; without it the type's documented default,
  30 seconds (http_types.go: "Default is 30 seconds"), so a local run never hangs on one.
- The response body is the node's ``outputs.result``, whatever the outcome.
- Without ``successCondition``, a 2xx status succeeds, any other fails the node with
  ``received non-2xx response code: N``. With one, it is an expr-lang boolean over
  ``request.{method,url,body,bodyBytes,headers}`` and
  ``response.{statusCode,body,headers}`` (headers as Go's ``http.Header``: canonical names,
  each a list of values; the request's without the secret ones, as ``HTTPHeaders.ToHeader``
  leaves ``valueFrom`` headers out); false fails it with
  ``successCondition 'TEXT' evaluated false``, an expression error fails it with that error.
- A request that cannot be made (refused connection, unknown host, timeout) fails the node
  with Go's ``url.Error`` wording: ``Get "URL": REASON``.

The node is Argo's ``HTTP`` node: no pod, so no ``hostNodeName`` and no pod name.
"""

from __future__ import annotations

import base64
import binascii
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from argo_local.expr import exprlang, params
from argo_local.expr.depends import ExprError
from argo_local.model.spec import SpecError

DEFAULT_TIMEOUT_S = 30.0
"""http_types.go TimeoutSeconds: "Default is 30 seconds"."""

BODY_LIMIT = 64 * 1024 * 1024
"""The most of a response body kept (a larger one fails the node rather than fill memory)."""


@dataclass(frozen=True)
class Outcome:
    """What the agent reports for the node (wfv1.NodeResult): its phase, message and result."""

    phase: str
    message: str
    result: str | None


class _NoRedirectErrors(urllib.request.HTTPErrorProcessor):
    """Every status is a response, never an exception: the template's condition decides."""

    def http_response(self, request: Any, response: Any) -> Any:
        return response

    https_response = http_response


def _canonical(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey: each dash-separated word capitalised."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _go_header(message: Message) -> dict[str, list[str]]:
    """Response headers as Go's ``http.Header``: canonical names, all values in order."""
    out: dict[str, list[str]] = {}
    for name, value in message.items():
        out.setdefault(_canonical(name), []).append(value)
    return out


def _body(http: Mapping[str, Any], where: str) -> bytes:
    source = http.get("bodyFrom")
    if source is not None:
        raw = str((source or {}).get("bytes") or "")
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise SpecError(f"{where}.http.bodyFrom.bytes: not base64 (a []byte field)") from None
    return str(http.get("body") or "").encode()


def _headers(
    http: Mapping[str, Any], secret: Callable[[str, str], str | None], where: str
) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """The headers to send, and the request headers a successCondition sees (ToHeader)."""
    sent: list[tuple[str, str]] = []
    seen: dict[str, list[str]] = {}
    for i, h in enumerate(http.get("headers") or []):
        name = str(h.get("name") or "")
        if not name:
            raise SpecError(f"{where}.http.headers[{i}]: a header needs a name")
        ref = (h.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            value = secret(str(ref.get("name")), str(ref.get("key")))
            if value is None:
                raise SpecError(
                    f"{where}.http.headers[{name}]: secret {ref.get('name')}/{ref.get('key')} "
                    "not found locally (looked in the environment and .env)"
                )
        else:
            value = str(h.get("value") or "")
            seen[name] = [value]
        sent.append((name, value))
    return sent, seen


def _go_error(method: str, url: str, exc: BaseException) -> str:
    """A failed request as Go's ``url.Error`` prints it: ``Get "URL": reason``."""
    op = method[:1].upper() + method[1:].lower()
    reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)):
        text = "context deadline exceeded"
    elif isinstance(reason, ConnectionRefusedError):
        text = "connect: connection refused"
    elif isinstance(reason, socket.gaierror):
        text = f"lookup {urllib.parse.urlsplit(url).hostname}: no such host"
    else:
        text = str(getattr(reason, "strerror", None) or reason)
    return f'{op} "{url}": {text}'


def call(http: Mapping[str, Any], secret: Callable[[str, str], str | None], where: str) -> Outcome:
    """Make the request of an (already substituted) ``http`` template and judge its response."""
    method = str(http.get("method") or "GET")
    url = str(http.get("url") or "")
    if not url:
        raise SpecError(f"{where}.http.url: required")
    body = _body(http, where)
    try:
        sent, seen = _headers(http, secret, where)
    except SpecError as exc:
        # agent.go: a secret that cannot be read is the request's error, which fails the node
        return Outcome("Failed", str(exc), None)
    timeout = http.get("timeoutSeconds")
    seconds = float(timeout) if timeout is not None else DEFAULT_TIMEOUT_S
    request = urllib.request.Request(url, data=body or None, method=method)
    for name, value in sent:
        # a Host header sets the request's host, as agent.go rewrites request.Host
        request.add_header(name, value)
    handlers: list[Any] = [_NoRedirectErrors()]
    if http.get("insecureSkipVerify"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=seconds) as response:
            data = response.read(BODY_LIMIT + 1)
            status, headers = int(response.status), _go_header(response.headers)
    except ValueError as exc:  # an URL urllib cannot parse: Go's NewRequest fails likewise
        return Outcome("Failed", f'parse "{url}": {exc}', None)
    except (OSError, urllib.error.URLError) as exc:
        return Outcome("Failed", _go_error(method, url, exc), None)
    if len(data) > BODY_LIMIT:
        return Outcome("Failed", f"response body larger than {BODY_LIMIT} bytes", None)
    text = data.decode(errors="replace")
    condition = str(http.get("successCondition") or "")
    if not condition:
        if 200 <= status < 300:
            return Outcome("Succeeded", "", text)
        return Outcome("Failed", f"received non-2xx response code: {status}", text)
    env = {
        "request": {
            "method": method,
            "url": url,
            "body": str(http.get("body") or ""),
            "bodyBytes": body if http.get("bodyFrom") is not None else None,
            "headers": seen,
        },
        "response": {"statusCode": status, "body": text, "headers": headers},
    }
    try:
        ok = exprlang.condition(condition, {**exprlang.environment({}), **env})
    except ExprError as exc:
        # agent.go: an EvalBool error is returned, and executeTemplate fails the node with it
        return Outcome("Failed", str(exc), None)
    if not ok:
        return Outcome("Failed", f"successCondition '{condition}' evaluated false", text)
    return Outcome("Succeeded", "", text)


def substituted(tmpl: Mapping[str, Any], scope: Mapping[str, str], where: str) -> dict[str, Any]:
    """The template's ``http`` with its ``{{...}}`` tags replaced (the controller substitutes
    the whole template before the agent sees it)."""
    return dict(params.substitute(dict(tmpl.get("http") or {}), scope, f"{where}.http"))
