"""The HTTP contract of the melody service: request validation and response shapes.

Everything a client can get wrong is rejected here with a 422, before any
sampling starts, so a replica only ever sees requests it can sample.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from musicgen.config import DEFAULT_BARS, DEFAULT_SECTION_BARS, DEFAULT_TOP_P
from musicgen.music.form import MAX_SECTIONS, parse_form
from musicgen.music.formats import SERVED_FORMATS
from musicgen.music.keys import key_name, parse_key
from musicgen.sampling.form import AUTO, is_auto
from musicgen.sampling.sampler import MAX_BARS, MAX_GUIDANCE
from musicgen.tokenizers.events import parse_time_signature

MAX_MELODIES = 16
MAX_SEED = 2**32 - 1
# Bodies past this are a 413 before they are read: the largest valid request is a few hundred bytes,
# and reading and parsing megabytes only to refuse them would cost the ingress's event loop.
MAX_BODY_BYTES = 64 * 1024
Format = Literal["json", "midi", "abc"]  # musicgen.music.formats.SERVED_FORMATS, as a type
FORMATS: tuple[Format, ...] = SERVED_FORMATS


def normalise_key(text: str) -> str:
    """'f# MINOR' -> 'F# minor'; only major and minor keys exist for the models."""
    words = text.split()
    if not 1 <= len(words) <= 2 or (len(words) == 2 and words[1].lower() not in ("major", "minor")):
        raise ValueError(f"key must look like 'D minor' or 'Bb major', got {text!r}")
    tonic, mode = parse_key(text)  # ValueError for an unknown tonic
    return key_name(tonic, mode)


class MelodyRequest(BaseModel):
    """Body of ``POST /v1/styles/{style}/melodies``: ``n`` melodies sampled with the same settings."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,  # NaN fails every range check silently; say what is wrong instead
        json_schema_extra={"examples": [{"n": 2, "bars": 8, "temperature": 0.9, "top_p": 0.95, "seed": 7,
                                         "key": "D minor", "time_signature": "6/8", "format": ["json", "abc"]}]},
    )

    n: int = Field(1, ge=1, le=MAX_MELODIES, description="number of melodies; melody i uses seed + i")
    bars: int | None = Field(None, ge=1, le=MAX_BARS, description=(
        f"length; missing: {DEFAULT_BARS}, or with a form its sections times section_bars"))
    temperature: float = Field(1.0, gt=0, le=2)
    top_k: int = Field(0, ge=0, le=256, description="0 switches top-k filtering off")
    top_p: float = Field(DEFAULT_TOP_P, gt=0, le=1, description="nucleus sampling mass; 1 switches the filter off")
    guidance: float | None = Field(None, ge=0, le=MAX_GUIDANCE, description=(
        "classifier-free guidance weight: above 1 a melody is more clearly of its style; needs a model trained "
        "with style dropout (see GET /v1/styles); missing: the model's default"))
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="picked by the server (and returned) when missing")
    key: str | None = Field(None, description="e.g. 'D minor'; the melody is transposed into it")
    tempo: float | None = Field(None, ge=20, le=300, description="quarter notes per minute; missing: the style's own")
    program: int | None = Field(None, ge=0, le=127, description="General MIDI instrument; missing: the style's own")
    time_signature: str | None = Field(None, description="e.g. '6/8'; the model chooses when missing")
    format: list[Format] = Field(list(FORMATS), min_length=1, description="what to return for each melody")
    form: str | None = Field(None, max_length=2 * MAX_SECTIONS, description=(
        f"sections as letters, up to {MAX_SECTIONS}, e.g. AABB or ABAC: a letter that returns repeats its first "
        "section, a new letter brings new material; the tune ends on the tonic. 'auto': each melody draws a form "
        "and section length from those of the style's training melodies (section_bars and bars then come from it)"))
    section_bars: int = Field(DEFAULT_SECTION_BARS, ge=1, le=MAX_BARS, description="bars per section of the form")
    variation: float = Field(0.0, ge=0, le=1, description=(
        "share of a returning section's last bars sampled anew (a second ending); 0: exact repeats"))
    loop: bool = Field(False, description="a seamless loop: the end leads back into the start, no final cadence")

    @field_validator("form")
    @classmethod
    def _form(cls, value: str | None) -> str | None:
        if value is None or is_auto(value):
            return AUTO if value is not None else None
        return parse_form(value)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return None if value is None else normalise_key(value)

    @field_validator("time_signature")
    @classmethod
    def _time_signature(cls, value: str | None) -> str | None:
        if value is None:
            return None
        numerator, denominator = parse_time_signature(value)
        return f"{numerator}/{denominator}"

    @field_validator("format")
    @classmethod
    def _unique_formats(cls, value: list[Format]) -> list[Format]:
        return list(dict.fromkeys(value))


class NoteOut(BaseModel):
    pitch: int = Field(description="MIDI pitch")
    onset: float = Field(description="beats (quarter notes) from the start of the first bar")
    duration: float = Field(description="beats")


class MelodyOut(BaseModel):
    """One generated melody, in the requested formats, with what it takes to reproduce it."""

    style: str
    seed: int
    bars: int
    key: str
    tempo: float
    time_signature: str
    model_id: str
    model_version: str = Field(description="first 12 hex digits of the weights' sha256")
    model_name: str
    guidance: float = Field(description="classifier-free guidance weight used (1: none)")
    batch_size: int = Field(description="melodies sampled together in the replica's batch that made this one")
    style_prob: float | None = Field(
        default=None, ge=0, le=1,
        description="the model's style classifier's probability that the melody is of its style, for a library "
        "to filter on (not a measure of the model's style fidelity); None when the model carries no classifier")
    top_style: str | None = Field(default=None, description="the style the classifier finds most probable")
    form: str | None = Field(default=None, description="the form asked for, with its section length and variation")
    section_bars: int | None = None
    variation: float | None = None
    loop: bool | None = Field(default=None, description="true for a loop")
    notes: list[NoteOut] | None = None
    midi_base64: str | None = None
    abc: str | None = None


class MelodiesResponse(BaseModel):
    melodies: list[MelodyOut]


class AutoscalingOut(BaseModel):
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    upscale_delay_s: float
    downscale_delay_s: float


class PrecisionChoiceOut(BaseModel):
    """How a replica chose its sampling precision (``musicgen.sampling.precision``)."""

    precision: str
    requested: str = Field(description="the precision setting: auto, or one precision")
    source: str = Field(description="asked (set explicitly), only (the one offered), measured or cached (auto)")
    batch_sizes: list[int] = Field(description="batch sizes auto timed at: 1 and max_batch_size")
    threads: int = Field(description="torch threads it was timed with (0: not timed)")
    cpu: str = Field(description="the CPU model it was timed on")
    ms_per_step: dict[str, list[float | None]] | None = Field(
        description="milliseconds per sampling step of each precision offered, one per batch size (null: not timed "
                    "there, being several times slower at a smaller size)")


class StyleInfo(BaseModel):
    """A style's deployment as its replica runs it (settings overridden by a Serve config file included)."""

    name: str
    deployment: str
    model_id: str
    model_version: str
    model_name: str
    default_guidance: float = Field(
        description="guidance used when a request gives none; 1 when the model cannot be guided"
    )
    precision: str = Field(description="weights the replicas sample with: fp32, bf16 or int8")
    precision_choice: PrecisionChoiceOut
    autoscaling: AutoscalingOut | None = Field(description="None for a fixed number of replicas")
    num_replicas: int | None = Field(description="the fixed replica count when autoscaling is off")
    max_ongoing_requests: int
    max_batch_size: int
    batch_wait_timeout_s: float


class StylesResponse(BaseModel):
    styles: list[StyleInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    styles: list[str]


class ErrorResponse(BaseModel):
    detail: str


def public_errors(errors: list[dict]) -> list[dict]:
    """Validation errors as they can be sent back: type, location and message, never the input.

    The input may be NaN or Infinity (not JSON), nested deeper than an encoder recurses, or 64 KB
    long; and text from a request may hold lone surrogates, which UTF-8 cannot encode.
    """
    return [{"type": str(e.get("type", "invalid")), "loc": [p if isinstance(p, int) else _printable(p)
                                                            for p in e.get("loc", ())],
             "msg": _printable(e.get("msg", "invalid"))} for e in errors]


def _printable(value: object) -> str:
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def describe_errors(errors: list[dict]) -> str:
    """pydantic/FastAPI validation errors as one readable line: 'bars: Input should be ... ; seed: ...'."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return "; ".join(parts)
