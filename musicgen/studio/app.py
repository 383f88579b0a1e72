"""The studio's HTTP side: a JSON API over a catalog and its reviews, and the page built on it.

    GET  /                                  the page (static/page.html; notation by abcjs, served from here)
    GET  /api/facets                        styles, keys, meters and numeric ranges to filter by
    GET  /api/melodies                      filtered, sorted, paginated rows, each with its review
    GET  /api/melodies/{id}                 one manifest row and its review
    PUT  /api/melodies/{id}/review          decision, rating, tags, note; names the version it read (409 if stale)
    GET  /api/melodies/{id}/audio.wav | score.abc | melody.mid | pianoroll.png
    POST /api/export                        copy the approved melodies to <catalog>/exports/<name>/

With the token variable set (``MUSICGEN_API_TOKEN``), every write needs ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import importlib.resources
import os
import re
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from musicgen import __version__, storage
from musicgen.music.export import WavUnavailable
from musicgen.studio.catalog import NUMERIC, Catalog, UnknownMelody, export_approved
from musicgen.studio.catalog import Query as ListQuery
from musicgen.studio.store import Review, ReviewStore, StaleReview

MAX_BODY_BYTES = 16 * 1024  # a review is a few hundred bytes; anything larger is refused before parsing
TAG = r"^[\w .+#-]{1,40}$"
SORTS = ("id", "style", "key", "time_signature", "rating", "decision", "updated_at", *NUMERIC)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"] | None = None
    rating: int | None = Field(None, ge=1, le=5)
    tags: list[Annotated[str, Field(pattern=TAG)]] = Field(default_factory=list, max_length=20)
    note: str = Field("", max_length=2000)
    version: int | None = Field(None, ge=0, description="the review version this edit starts from (or If-Match)")


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("approved", pattern=r"^[\w.-]{1,64}$", description="folder under <catalog>/exports/")


def create_app(catalog: Catalog, store: ReviewStore, token_env: str = "MUSICGEN_API_TOKEN") -> FastAPI:
    app = FastAPI(title="musicgen studio", version=__version__, max_body_size=MAX_BODY_BYTES,
                  description="Audition, filter, rate and keep the melodies of a catalog.")

    def writer(authorization: str | None = Header(None)) -> None:
        token = os.environ.get(token_env)
        if token and not hmac.compare_digest(authorization or "", f"Bearer {token}"):
            raise HTTPException(401, "this studio needs 'Authorization: Bearer <token>' to change anything",
                                headers={"WWW-Authenticate": "Bearer"})

    def melody(melody_id: str) -> dict:
        try:
            return catalog.row(melody_id)
        except UnknownMelody:
            raise HTTPException(404, f"no melody {melody_id!r} in this catalog") from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _static("page.html").decode()

    @app.get("/static/abcjs-basic-min.js", include_in_schema=False)
    def abcjs() -> Response:
        return Response(_static("abcjs-basic-min.js"), media_type="text/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/api/facets", summary="what a list can be filtered and sorted by")
    def facets() -> dict:
        return {"melodies": len(catalog), "facets": catalog.facets(), "sorts": list(SORTS),
                "writes_need_token": bool(os.environ.get(token_env))}

    @app.get("/api/melodies", summary="melodies, filtered and sorted, a page at a time")
    def melodies(request: Request,
                 style: str | None = None, key: str | None = None, time_signature: str | None = None,
                 decision: Literal["approve", "reject", "none"] | None = None,
                 min_rating: int | None = Query(None, ge=1, le=5), tag: str | None = Query(None, max_length=40),
                 q: str | None = Query(None, max_length=100, description="in the id, tags or note"),
                 sort: Literal[SORTS] = "id", order: Literal["asc", "desc"] = "asc",  # type: ignore[valid-type]
                 offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)) -> dict:
        """Also ``min_<column>`` / ``max_<column>`` for the numeric columns (bars, duration_s, tempo, ...)."""
        filters = []
        for column in NUMERIC:
            low, high = (_number(request, f"{side}_{column}") for side in ("min", "max"))
            if low is not None or high is not None:
                filters.append((column, low, high))
        query = ListQuery(style, key, time_signature, decision, min_rating, tag, q, tuple(filters), sort,
                          order == "desc", offset, limit)
        reviews = store.get_many()
        total, rows = catalog.select(query, reviews)
        return {"total": total, "offset": offset, "limit": limit,
                "melodies": [{**r, "review": reviews.get(r["id"], Review(r["id"])).as_dict()} for r in rows]}

    @app.get("/api/melodies/{melody_id}", summary="one melody: its manifest row and its review")
    def one(melody_id: str) -> dict:
        row = melody(melody_id)
        return {**row, "review": store.get(melody_id).as_dict()}

    @app.put("/api/melodies/{melody_id}/review", dependencies=[Depends(writer)],
             responses={409: {"description": "the review changed since the version this edit started from"}},
             summary="decide, rate, tag and annotate a melody")
    def review(melody_id: str, body: ReviewIn, if_match: str | None = Header(None)) -> dict:
        melody(melody_id)
        version = body.version if body.version is not None else _if_match(if_match)
        if version is None:
            raise HTTPException(428, "name the review version this edit starts from: 'version' or If-Match")
        try:
            saved = store.put(melody_id, body.decision, body.rating, body.tags, body.note, version)
        except StaleReview as stale:
            return JSONResponse(status_code=409, content={"detail": str(stale), "current": stale.current.as_dict()})
        return saved.as_dict()

    @app.get("/api/melodies/{melody_id}/audio.wav", summary="the WAV preview (rendered once when missing)")
    def audio(melody_id: str) -> Response:
        melody(melody_id)
        try:
            return Response(catalog.wav(melody_id), media_type="audio/wav")
        except WavUnavailable as exc:
            raise HTTPException(503, f"no WAV preview: {exc}") from None

    @app.get("/api/melodies/{melody_id}/score.abc", summary="the melody as ABC text")
    def abc(melody_id: str) -> Response:
        melody(melody_id)
        return Response(_file(catalog, melody_id, "abc"), media_type="text/plain; charset=utf-8")

    @app.get("/api/melodies/{melody_id}/melody.mid", summary="the MIDI file")
    def midi(melody_id: str) -> Response:
        melody(melody_id)
        return Response(_file(catalog, melody_id, "mid"), media_type="audio/midi")

    @app.get("/api/melodies/{melody_id}/pianoroll.png", summary="a piano roll")
    def piano_roll(melody_id: str) -> Response:
        melody(melody_id)
        return Response(catalog.piano_roll(melody_id), media_type="image/png")

    @app.post("/api/export", dependencies=[Depends(writer)], summary="copy the approved melodies to a folder")
    def export(body: ExportIn) -> dict:
        return export_approved(catalog, store.get_many(), storage.join(catalog.uri, "exports", body.name))

    return app


def _static(name: str) -> bytes:
    return (importlib.resources.files("musicgen.studio") / "static" / name).read_bytes()


def _file(catalog: Catalog, melody_id: str, fmt: str) -> bytes:
    try:
        return catalog.file(melody_id, fmt)
    except FileNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None


def _number(request: Request, name: str) -> float | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise HTTPException(422, f"{name} must be a number, not {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise HTTPException(422, f"{name} must be a finite number")
    return value


def _if_match(header: str | None) -> int | None:
    if header is None:
        return None
    match = re.fullmatch(r'(?:W/)?"?(\d+)"?', header.strip())
    if not match:
        raise HTTPException(422, "If-Match must be the review version, e.g. \"3\"")
    return int(match.group(1))
