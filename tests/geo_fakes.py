"""A local HTTP server that answers like Nominatim and OSRM (their recorded response shapes),
so geocoding is tested over real HTTP without anything leaving the machine.

- Nominatim: `GET /search?q=...&format=json` -> `[{"lat": "51.34", "lon": "12.37",
  "display_name": ...}]` for a known address, `[]` otherwise.
- OSRM: `GET /route/v1/<profile>/<lon>,<lat>;<lon>,<lat>?overview=false` ->
  `{"code": "Ok", "routes": [{"distance": 12345.6, "duration": 900.1, ...}]}`.

Failures are queued per call: an HTTP status (429, 500, 503, ...), `"timeout"` (answers
only after `slow_seconds`), `"garbage"` (not JSON) or `"no_route"` (OSRM's NoRoute).
A 429 carries `Retry-After: <retry_after>` when that is set.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.devstack import free_port

ROUTE = {"distance": 12345.6, "duration": 900.1}


@dataclass(frozen=True)
class Seen:
    """One request the fake received."""

    path: str
    query: dict[str, list[str]]
    user_agent: str
    at: float  # time.monotonic() on arrival


@dataclass
class FakeGeoServer:
    """Nominatim and OSRM on 127.0.0.1; `places` maps lower-case address parts to lat/lon."""

    places: dict[str, tuple[float, float]] = field(default_factory=dict)
    slow_seconds: float = 2.0
    retry_after: str | None = None
    requests: list[Seen] = field(default_factory=list)
    failures: deque[int | str] = field(default_factory=deque)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        """Base URL, as NOMINATIM_URL or OSRM_URL."""
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, *failures: int | str) -> None:
        """Answer the next requests with these failures, in order."""
        self.failures.extend(failures)

    def hits(self, prefix: str) -> list[Seen]:
        """The requests whose path starts with `prefix`."""
        return [seen for seen in self.requests if seen.path.startswith(prefix)]

    def __enter__(self) -> FakeGeoServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                fake.requests.append(
                    Seen(
                        parts.path,
                        parse_qs(parts.query),
                        self.headers.get("User-Agent", ""),
                        time.monotonic(),
                    )
                )
                failure = fake.failures.popleft() if fake.failures else None
                if failure == "timeout":
                    time.sleep(fake.slow_seconds)
                if isinstance(failure, int):
                    extra = {"Retry-After": fake.retry_after} if failure == 429 else {}
                    self._send(failure, {"error": "scripted failure"}, headers=extra)
                elif failure == "garbage":
                    self._send(200, None, raw=b"<html>surprise</html>")
                elif parts.path == "/search":
                    self._send(200, fake.search(parse_qs(parts.query).get("q", [""])[0]))
                elif parts.path.startswith("/route/v1/"):
                    if failure == "no_route":
                        self._send(400, {"code": "NoRoute", "message": "Impossible route"})
                    else:
                        self._send(200, {"code": "Ok", "routes": [{**ROUTE, "weight": 900.1}]})
                else:
                    self._send(404, {"error": "unknown path"})

            def _send(
                self,
                status: int,
                body: Any,
                raw: bytes | None = None,
                headers: dict[str, str | None] | None = None,
            ) -> None:
                data = raw if raw is not None else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        if value is not None:
                            self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def search(self, query: str) -> list[dict[str, str]]:
        """Nominatim's answer: the first known place named in the query, else nothing."""
        for part, (lat, lon) in self.places.items():
            if part in query.lower():
                return [{"lat": str(lat), "lon": str(lon), "display_name": query, "type": "house"}]
        return []
