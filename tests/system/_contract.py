"""Real HTTP exchanges (curl, in a lab namespace) checked against the OpenAPI document the daemon serves.

Not a test module: tests/system/test_api_contract.py drives it. The document is fetched from the running
daemon (GET /api/v1/openapi.json), whatever produces it, and handed to openapi-core, which checks that it
is a valid OpenAPI 3 document and then, per exchange, that the status code is one the operation
documents, the content type is one it documents for that status, and the body validates against the
schema. Valid request bodies are validated as requests too (the schema accepts what the server
accepts).

One rule is stricter than OpenAPI's default, to keep the document honest: an object schema that lists
its properties names all of them (additionalProperties is false unless the schema says otherwise), so a
field the server returns and the document does not name is a failure, not silently allowed.
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.deserializing.media_types.util import plain_loads
from werkzeug.datastructures import Headers, ImmutableMultiDict

from lab.netns import Namespace

METHODS = ("get", "put", "post", "delete", "patch")


def strict(document: dict[str, Any]) -> dict[str, Any]:
    """A copy in which every object schema with `properties` and no `additionalProperties` gets
    additionalProperties: false."""
    out = copy.deepcopy(document)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out.get("components", {}))
    walk(out.get("paths", {}))
    return out


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in document["paths"].items() for method in ops if method in METHODS}


@dataclass(frozen=True, slots=True)
class WireRequest:
    """What curl sent, in the shape openapi-core reads (openapi_core.protocols.Request)."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclass(frozen=True, slots=True)
class WireResponse:
    """What the daemon answered, in the shape openapi-core reads (openapi_core.protocols.Response)."""

    status_code: int
    content_type: str
    headers: Headers
    data: bytes


@dataclass(slots=True)
class Exchange:
    method: str
    url: str
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode()


@dataclass
class Contract:
    """Sends requests with curl from a namespace and records every way an answer differs from the document."""

    document: dict[str, Any]
    tmp: Path  # where curl writes bodies
    api: OpenAPI = field(init=False)
    problems: list[str] = field(default_factory=list)
    exercised: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        # Scripts are text like text/plain (openapi-core would hand the schema bytes).
        config = Config(extra_media_type_deserializers={"text/x-shellscript": plain_loads})
        self.api = OpenAPI.from_dict(strict(self.document), config=config)  # raises if not valid OpenAPI 3

    def call(self, ns: Namespace, method: str, url: str, *, expect: int, body: Any = None, token: str | None = None,
             source: str | None = None, headers: dict[str, str] | None = None, raw: bytes | None = None,
             valid_request: bool | None = None) -> Exchange:
        """One exchange; `expect` is the status this case must get (and the document must allow).
        `body` is sent as JSON, `raw` as is (malformed JSON). A valid request (default: a 2xx is
        expected) is validated against the document's request schema too."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        data: bytes | None = None
        if body is not None or raw is not None:
            data = raw if raw is not None else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        out = self.tmp / f"curl-{time.monotonic_ns()}"
        argv = ["curl", "-sS", "--max-time", "10", "--path-as-is", "-o", str(out), "-w",
                "%{http_code}\n%{content_type}", "-X", method.upper()]
        if source is not None:
            argv += ["--interface", source]
        for key, value in hdrs.items():
            argv += ["-H", f"{key}: {value}"]
        if data is not None:
            sent = self.tmp / f"body-{time.monotonic_ns()}"
            sent.write_bytes(data)
            argv += ["--data-binary", f"@{sent}"]
        result = ns.run([*argv, url], check=False, timeout=20)
        status_text, _, content_type = result.stdout.partition("\n")
        if not status_text.strip().isdigit() or int(status_text) == 0:
            self.problems.append(f"{method.upper()} {url}: curl failed ({result.returncode}): {result.stderr.strip()}")
        exchange = Exchange(method.lower(), url, int(status_text or 0), content_type.strip(),
                            out.read_bytes() if out.exists() else b"")
        self._check(exchange, hdrs, data, expect, valid_request if valid_request is not None else expect < 300)
        return exchange

    def _check(self, ex: Exchange, headers: dict[str, str], data: bytes | None, expect: int, valid: bool) -> None:
        where = f"{ex.method.upper()} {urlsplit(ex.url).path}"
        if ex.status != expect:
            self.problems.append(f"{where}: status {ex.status}, the case expects {expect}: {ex.body[:300]!r}")
        parts = urlsplit(ex.url)
        request = WireRequest(
            host_url=f"{parts.scheme}://{parts.netloc}", path=parts.path, method=ex.method, body=data,
            content_type=headers.get("Content-Type", "").lower(),
            parameters=RequestParameters(query=ImmutableMultiDict(parse_qsl(parts.query)), header=Headers(headers),
                                         cookie=ImmutableMultiDict(), path={}))
        response = WireResponse(ex.status, ex.content_type.lower(), Headers({"Content-Type": ex.content_type}),
                                ex.body)
        pattern = self._pattern(ex.method, parts.path)
        if pattern is None:
            self.problems.append(f"{where}: no operation in the document matches")
            return
        self.exercised.add((ex.method, pattern))
        if valid:
            try:
                self.api.validate_request(request)
            except Exception as e:  # openapi-core raises a family of validation errors
                self.problems.append(f"{where}: the request the server accepts breaks the document: {_why(e)}")
        try:
            self.api.validate_response(request, response)
        except Exception as e:
            self.problems.append(f"{where} -> {ex.status} {ex.content_type}: {_why(e)}; body {ex.body[:160]!r}")

    def _pattern(self, method: str, path: str) -> str | None:
        """The documented path template `path` falls under (literal segments win over templates)."""
        best: tuple[int, str] | None = None
        for template, ops in self.document["paths"].items():
            if method not in ops:
                continue
            regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(regex, path):
                literal = len(re.sub(r"\{[^}]+\}", "", template))
                if best is None or literal > best[0]:
                    best = (literal, template)
        return best[1] if best else None


def _why(error: BaseException) -> str:
    """openapi-core wraps the schema errors; the innermost ones say which field and why (the value
    itself, often the whole body, is left out: the caller shows the body's start)."""
    found: list[str] = []
    node: BaseException | None = error
    while node is not None:
        for inner in getattr(node, "schema_errors", None) or []:
            found.append(f"at {'/'.join(map(str, inner.absolute_path)) or '(top)'}: {inner.message[:300]}")
        node = node.__cause__
    return f"{type(error).__name__}: " + ("; ".join(dict.fromkeys(found)) if found else str(error)[:300])
