"""Python clients for the melody service (``musicgen serve``): sync (requests) and async (aiohttp).

Both retry with exponential backoff on what a retry can fix (connection
errors, 429 and 5xx) and never on other 4xx answers, which a retry would only
repeat. An answer that is still an error after the retries raises
:class:`MusicgenError` with the server's message.

    with MusicgenClient("http://127.0.0.1:8000", token=...) as client:
        melodies = client.melodies("irish_folk", n=2, bars=8, seed=7)
        save_midi(melodies[0], "tune.mid")
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import requests


class MusicgenError(RuntimeError):
    """An error answer from the service (``status`` 0: no answer, after the retries)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


def save_midi(melody: dict, path: str | os.PathLike) -> Path:
    """Write one melody of a ``melodies()`` answer (asked with format 'midi') as a .mid file."""
    if not melody.get("midi_base64"):
        raise ValueError("this melody carries no MIDI: ask for format 'midi'")
    path = Path(path)
    path.write_bytes(base64.b64decode(melody["midi_base64"]))
    return path


def save_all_midi(melodies: list[dict], folder: str | os.PathLike) -> list[Path]:
    """Each melody as ``<folder>/<style>-<seed>.mid``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [save_midi(m, folder / f"{m['style']}-{m['seed']}.mid") for m in melodies]


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _error_message(status: int, body: Any) -> str:
    """The server's ``detail`` when it sent one (FastAPI's shape), else the body itself."""
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500] or f"HTTP {status}"


class _ClientBase:
    """What the two clients share: base URL, auth header, timeout and the backoff schedule."""

    def __init__(self, base_url: str, token: str | None, timeout: float, retries: int, backoff: float):
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def delay(self, attempt: int) -> float:
        return self.backoff * 2**attempt

    @staticmethod
    def melodies_path(style: str) -> str:
        return f"/v1/styles/{quote(style, safe='')}/melodies"


class MusicgenClient(_ClientBase):
    """Blocking client on a ``requests.Session`` (reuses connections; close it or use ``with``)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.25):
        super().__init__(base_url, token, timeout, retries, backoff)
        self.session = requests.Session()

    def __enter__(self) -> MusicgenClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def _request(self, method: str, path: str, json: dict | None = None) -> Any:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.session.request(method, self.url(path), json=json, headers=self.headers,
                                                timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if last:
                    raise MusicgenError(0, f"no answer from {self.base_url}: {exc}") from exc
            else:
                if response.ok:
                    return response.json()
                if last or not _retryable(response.status_code):
                    try:
                        body = response.json()
                    except ValueError:
                        body = response.text
                    raise MusicgenError(response.status_code, _error_message(response.status_code, body))
            time.sleep(self.delay(attempt))

    def health(self) -> dict:
        return self._request("GET", "/healthz")

    def styles(self) -> list[dict]:
        """Each style with its model and deployment settings."""
        return self._request("GET", "/v1/styles")["styles"]

    def melodies(self, style: str, **params) -> list[dict]:
        """Sample melodies; ``params`` are the request fields (n, bars, seed, key, format, ...)."""
        return self._request("POST", self.melodies_path(style), json=params)["melodies"]


class AsyncMusicgenClient(_ClientBase):
    """The same API for asyncio code, on one ``aiohttp.ClientSession`` (``async with`` or ``await close()``)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.25):
        super().__init__(base_url, token, timeout, retries, backoff)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncMusicgenClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        # created on first use, inside the running event loop that will drive it
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _request(self, method: str, path: str, json: dict | None = None) -> Any:
        session = self._get_session()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                async with session.request(method, self.url(path), json=json) as response:
                    if response.ok:
                        return await response.json()
                    if last or not _retryable(response.status):
                        try:
                            body = await response.json(content_type=None)
                        except ValueError:
                            body = await response.text()
                        raise MusicgenError(response.status, _error_message(response.status, body))
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if last:
                    raise MusicgenError(0, f"no answer from {self.base_url}: {exc}") from exc
            await asyncio.sleep(self.delay(attempt))

    async def health(self) -> dict:
        return await self._request("GET", "/healthz")

    async def styles(self) -> list[dict]:
        return (await self._request("GET", "/v1/styles"))["styles"]

    async def melodies(self, style: str, **params) -> list[dict]:
        return (await self._request("POST", self.melodies_path(style), json=params))["melodies"]
