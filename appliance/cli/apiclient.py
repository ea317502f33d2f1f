"""The CLI's way to the running daemon: its admin API over HTTP with the bearer token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from appliance.config import Config
from appliance.token import read_token


class ApiUnavailable(ConnectionError):
    """The daemon is not running (or not reachable): offline commands may work on the store directly."""


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ApiClient:
    base_url: str
    token: str | None
    timeout: float = 10.0

    @classmethod
    def from_config(cls, cfg: Config) -> ApiClient:
        host = str(cfg.http.listen)
        if host == "0.0.0.0":
            host = "127.0.0.1"
        return cls(f"http://{host}:{cfg.http.port}", read_token(cfg.state_dir))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:  # reads need a token too (the reader role); the CLI on the appliance uses admin.token
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("error", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise ApiError(e.code, message) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            raise ApiUnavailable(f"imageserver is not answering at {self.base_url} ({e})") from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
