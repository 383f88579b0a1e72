"""The melody service on Ray Serve: a FastAPI ingress in front of one deployment per style.

A deployment per style gives each style its own replicas and autoscaling (a
popular style scales out without dragging the others along), while every
replica loads the model with ``MelodyGenerator.from_artifact``, the loader the
bulk job uses. Inside a replica ``@serve.batch`` turns concurrent requests into
one batched ``generate`` call, so a burst costs one sampling loop, not many;
requests that arrive while a batch samples wait for it and then go in together.

Nothing here starts Ray or Serve on import: ``build_app`` returns an
application and ``run_server`` (``musicgen serve``) runs it. No ``from
__future__ import annotations`` here: FastAPI must see real types on the
route methods, which Serve copies into the replicas.
"""

import asyncio
import base64
import dataclasses
import hmac
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

import yaml
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from ray import serve
from ray.serve.handle import DeploymentHandle

from musicgen import __version__, storage
from musicgen.config import check_precision, from_dict
from musicgen.music.export import to_abc_text, to_midi_bytes
from musicgen.music.form import FormMix
from musicgen.music.melody import TICKS_PER_BEAT
from musicgen.pretrained import PRETRAINED, resolve_model
from musicgen.sampling import GeneratedMelody, MelodyGenerator, SampleRequest
from musicgen.sampling.form import is_auto, shape_fields
from musicgen.sampling.provenance import SERVE_FIELDS, provenance
from musicgen.sampling.sampler import UNGUIDABLE, resolve_guidance
from musicgen.serving.schemas import (
    MAX_BODY_BYTES,
    MAX_MELODIES,
    MAX_SEED,
    AutoscalingOut,
    ErrorResponse,
    Format,
    HealthResponse,
    MelodiesResponse,
    MelodyOut,
    MelodyRequest,
    NoteOut,
    PrecisionChoiceOut,
    StyleInfo,
    StylesResponse,
    describe_errors,
    parse_time_signature,
    public_errors,
)

APP_NAME = "musicgen"
INGRESS_NAME = "api"
BATCH_SETTINGS = ("max_batch_size", "batch_wait_timeout_s")  # a style deployment's user_config


def style_deployment_name(style: str) -> str:
    """The deployment serving ``style``: the name a Serve config file overrides settings by."""
    return f"style-{style}"


# -- settings ------------------------------------------------------------------


@dataclass(frozen=True)
class Autoscaling:
    """Serve autoscaling for one style's deployment (``min_replicas >= 1`` avoids cold starts)."""

    min_replicas: int = 1
    max_replicas: int = 2
    # per replica. A batch costs little more than one melody on a CPU (the step overhead dominates),
    # so replicas are added only once batches are half full
    target_ongoing_requests: float = 8.0
    upscale_delay_s: float = 3.0
    downscale_delay_s: float = 30.0

    def __post_init__(self):
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError("autoscaling needs 0 <= min_replicas <= max_replicas and max_replicas >= 1")
        if self.target_ongoing_requests <= 0:
            raise ValueError("target_ongoing_requests must be > 0")


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the melody service; ``load_config`` reads them from YAML."""

    model: str  # artifact folder written by `musicgen train` (local or s3://)
    host: str = "127.0.0.1"
    port: int = 8000
    styles: tuple[str, ...] = ()  # styles to deploy; empty: every style the model knows
    autoscaling: Autoscaling = Autoscaling()  # for every style ...
    style_autoscaling: Mapping[str, Autoscaling] = field(default_factory=dict)  # ... unless overridden here
    max_batch_size: int = 16  # melodies sampled together in one replica (16 cost ~3x one, on a CPU)
    batch_wait_timeout_s: float = 0.001  # an idle replica's wait for more requests (a busy one gathers them anyway)
    max_ongoing_requests: int = 32  # per style replica; at least max_batch_size, or batches never fill
    replica_num_cpus: float = 0.25  # fractional: several replicas share a CPU (each samples on one thread)
    replica_num_gpus: float = 0.0
    device: str = "auto"  # torch device in the replicas
    # fp32, bf16 or int8 weights in the replicas; auto: the fastest at batch 1 and max_batch_size
    precision: str = "auto"
    ingress_replicas: int = 1
    ingress_num_cpus: float = 0.1
    ingress_max_ongoing_requests: int = 256  # the ingress only awaits the style deployments
    auth_token_env: str | None = "MUSICGEN_API_TOKEN"  # bearer token read from this variable; unset: no auth

    def __post_init__(self):
        if self.max_batch_size < 1 or self.batch_wait_timeout_s < 0:
            raise ValueError("need max_batch_size >= 1 and batch_wait_timeout_s >= 0")
        check_precision(self.precision)
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError("max_ongoing_requests must be >= max_batch_size, or batches never fill")
        unknown = set(self.style_autoscaling) - set(self.styles) if self.styles else set()
        if unknown:
            raise ValueError(f"style_autoscaling names styles not in styles: {', '.join(sorted(unknown))}")

    @classmethod
    def from_dict(cls, values: Mapping) -> "ServeConfig":
        """From plain YAML values; a style's autoscaling entry overrides only the keys it names."""
        values = dict(values)
        default = from_dict(Autoscaling, values.pop("autoscaling", None) or {})
        overrides = {
            style: from_dict(Autoscaling, {**dataclasses.asdict(default), **(entry or {})})
            for style, entry in (values.pop("style_autoscaling", None) or {}).items()
        }
        return from_dict(cls, {**values, "autoscaling": default, "style_autoscaling": overrides})

    def autoscaling_for(self, style: str) -> Autoscaling:
        return self.style_autoscaling.get(style, self.autoscaling)


def load_config(path: str | None = None, **overrides) -> ServeConfig:
    """Settings from a YAML file (optional), then ``overrides`` that are not None (command-line flags)."""
    values: dict = {}
    if path:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["model"] = values.get("model") or PRETRAINED  # the shipped model unless one is named
    return ServeConfig.from_dict(values)


# -- one style ---------------------------------------------------------------------


def render(generated: GeneratedMelody, formats: tuple[Format, ...], generator: MelodyGenerator,
           batch_size: int, verdict: tuple[float | None, str | None] = (None, None)) -> MelodyOut:
    """The response entry for one sampled melody, in the requested formats, with its style ``verdict``
    (``MelodyGenerator.verdicts``)."""
    melody, request = generated.melody, generated.request
    title = f"{request.style} {request.seed}"
    extra: dict = {}
    if "json" in formats:
        extra["notes"] = [NoteOut(pitch=n.pitch, onset=n.onset / TICKS_PER_BEAT, duration=n.duration / TICKS_PER_BEAT)
                          for n in melody.notes]
    if "midi" in formats:
        extra["midi_base64"] = base64.b64encode(to_midi_bytes(melody, title)).decode("ascii")
    if "abc" in formats:
        extra["abc"] = to_abc_text(melody, title)
    numerator, denominator = melody.time_signature
    return MelodyOut(**provenance(generator, request).subset(SERVE_FIELDS), key=melody.key, tempo=melody.tempo,
                     time_signature=f"{numerator}/{denominator}", batch_size=batch_size, style_prob=verdict[0],
                     top_style=verdict[1], **extra)


@serve.deployment
class StyleGenerator:
    """Replicas sampling one style. ``user_config`` carries the batch settings, so a Serve config
    file can change them per style without restarting replicas."""

    def __init__(self, model: str, style: str, device: str, precision: str, max_batch_size: int):
        import torch

        torch.set_num_threads(1)  # replicas share the machine's cores; one thread each scales best
        # auto: timed on this thread count at a lone request's batch and a full one (cached per CPU model)
        self.generator = MelodyGenerator.from_artifact(model, device=device, precision=precision,
                                                       batch_sizes=(1, max_batch_size))
        self.style = style
        self.generator.check_styles([style])
        self.batching: dict = {}
        self._model_free = asyncio.Event()
        self._model_free.set()

    def reconfigure(self, user_config: dict) -> None:
        if set(user_config) != set(BATCH_SETTINGS):
            raise ValueError(f"user_config needs exactly {', '.join(BATCH_SETTINGS)}; got {', '.join(user_config)}")
        self._sample.set_max_batch_size(int(user_config["max_batch_size"]))
        self._sample.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))
        self.batching = dict(user_config)

    async def generate(self, request: SampleRequest, formats: tuple[Format, ...]) -> MelodyOut:
        if request.style != self.style:
            raise ValueError(f"this deployment serves {self.style!r}, not {request.style!r}")
        # Serve closes a batch when its wait ends, even while the previous batch still samples; a closed
        # batch then only queues. Holding requests here while the model is busy lets all that arrived
        # meanwhile enter the queue together, as one batch, without making a lone request wait.
        await self._model_free.wait()
        return await self._sample((request, formats))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.001)  # replaced from user_config in reconfigure
    async def _sample(self, items: list[tuple[SampleRequest, tuple[Format, ...]]]) -> list[MelodyOut]:
        self._model_free.clear()
        try:
            # the torch loop blocks: run it off the event loop, which keeps accepting requests
            return await asyncio.to_thread(self._sample_now, items)
        finally:
            self._model_free.set()

    def _sample_now(self, items: list[tuple[SampleRequest, tuple[Format, ...]]]) -> list[MelodyOut]:
        generated = self.generator.generate([request for request, _ in items])
        verdicts = self.generator.verdicts([g.melody for g in generated], [g.request.style for g in generated])
        return [render(g, formats, self.generator, len(items), v)
                for g, v, (_, formats) in zip(generated, verdicts, items)]

    def describe(self) -> StyleInfo:
        context = serve.get_replica_context()
        # the replica's own deployment config: what a Serve config file overrode by name is in it
        config = context._deployment_config
        autoscaling = config.autoscaling_config
        return StyleInfo(
            name=self.style,
            deployment=context.deployment,
            model_id=self.generator.model_id,
            model_version=self.generator.model_version,
            model_name=self.generator.model_name,
            default_guidance=resolve_guidance(self.generator.model, None),
            precision=self.generator.precision,
            precision_choice=PrecisionChoiceOut(**self.generator.precision_choice.as_dict()),
            autoscaling=AutoscalingOut(**{k: getattr(autoscaling, k) for k in AutoscalingOut.model_fields})
            if autoscaling else None,
            num_replicas=None if autoscaling else config.num_replicas,
            max_ongoing_requests=config.max_ongoing_requests,
            **self.batching,
        )


# -- the HTTP API ----------------------------------------------------------------

api = FastAPI(
    title="musicgen",
    version=__version__,
    description="Melodies in the style of a corpus, sampled by a trained model. One Ray Serve deployment per style.",
    max_body_size=MAX_BODY_BYTES,  # a 413 from the Content-Length header, before any byte of the body is read
)
bearer = HTTPBearer(auto_error=False, description="the token in the server's auth_token_env variable, when set")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
_AUTH_FAILED = {401: {"model": ErrorResponse, "description": "missing or wrong bearer token"}}


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, with the errors also spelled out in one line for people. Unlike FastAPI's own,
    it never echoes the input (``public_errors``): echoing a NaN made the 422 a 500."""
    errors = public_errors(exc.errors())
    return JSONResponse(status_code=422, content={"detail": describe_errors(errors), "errors": errors})


@serve.deployment(name=INGRESS_NAME)
@serve.ingress(api)
class MelodyAPI:
    """The HTTP front: checks auth and input, fans the melodies out to the style's deployment."""

    def __init__(self, styles: dict[str, DeploymentHandle], auth_token_env: str | None, guidable: bool,
                 form_mixes: dict[str, FormMix] | None = None):
        self.styles, self.guidable = styles, guidable
        self.form_mixes = form_mixes or {}  # per style, what form "auto" draws from (ArtifactMeta.form_mix)
        # read in the replica, so the token never travels in the application's config
        self.token = os.environ.get(auth_token_env) if auth_token_env else None

    def _authorize(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self.token and (credentials is None or not hmac.compare_digest(credentials.credentials, self.token)):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def _handle(self, style: str) -> DeploymentHandle:
        if style not in self.styles:
            raise HTTPException(404, f"unknown style {style!r}; available styles: {', '.join(self.styles)}")
        return self.styles[style]

    @api.get("/healthz", response_model=HealthResponse, summary="liveness (no auth)")
    async def health(self) -> HealthResponse:
        return HealthResponse(styles=list(self.styles))

    @api.get("/v1/styles", response_model=StylesResponse, responses=_AUTH_FAILED,
             summary="styles, their model and their deployment settings")
    async def list_styles(self, credentials: Credentials) -> StylesResponse:
        self._authorize(credentials)
        infos = await asyncio.gather(*(handle.describe.remote() for handle in self.styles.values()))
        return StylesResponse(styles=list(infos))

    @api.post("/v1/styles/{style}/melodies", response_model=MelodiesResponse,
              responses={**_AUTH_FAILED, 404: {"model": ErrorResponse, "description": "unknown style"}},
              summary="sample n melodies in a style")
    async def melodies(self, style: str, body: MelodyRequest, credentials: Credentials) -> MelodiesResponse:
        self._authorize(credentials)
        handle = self._handle(style)
        seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED - MAX_MELODIES)
        meter = parse_time_signature(body.time_signature) if body.time_signature else None
        if body.guidance not in (None, 1) and not self.guidable:
            raise HTTPException(422, UNGUIDABLE)
        try:
            if is_auto(body.form) and body.bars is not None:
                raise ValueError("form 'auto' takes the length from the form it draws: leave out bars")
            requests = [SampleRequest(
                style=style, seed=seed + i, temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                time_signature=meter, key=body.key, tempo=body.tempo, program=body.program, guidance=body.guidance,
                loop=body.loop, **shape_fields(body.form, body.section_bars, body.variation, body.bars, seed + i,
                                               self.form_mixes.get(style, FormMix())))
                for i in range(body.n)]
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        formats = tuple(body.format)
        melodies = await asyncio.gather(*(handle.generate.remote(r, formats) for r in requests))
        return MelodiesResponse(melodies=list(melodies))


# -- building and running ------------------------------------------------------------


def build_app(config: ServeConfig) -> serve.Application:
    """The ingress bound to one deployment per style. Loads the model once here, so a bad URI
    or style fails now with a clear error rather than in crash-looping replicas."""
    model = storage.absolute(resolve_model(config.model))  # replicas run in other working directories
    generator = MelodyGenerator.from_artifact(model, device="cpu", precision="fp32")
    known = generator.styles
    styles = config.styles or known
    unknown = (set(styles) | set(config.style_autoscaling)) - set(known)
    if unknown:
        raise ValueError(f"the model has no style {', '.join(sorted(unknown))}; it knows {', '.join(known)}")
    handles = {
        style: StyleGenerator.options(
            name=style_deployment_name(style),
            autoscaling_config=dataclasses.asdict(config.autoscaling_for(style)),
            max_ongoing_requests=config.max_ongoing_requests,
            ray_actor_options={"num_cpus": config.replica_num_cpus, "num_gpus": config.replica_num_gpus},
            user_config={"max_batch_size": config.max_batch_size, "batch_wait_timeout_s": config.batch_wait_timeout_s},
        ).bind(model, style, config.device, config.precision, config.max_batch_size)
        for style in styles
    }
    return MelodyAPI.options(
        num_replicas=config.ingress_replicas,
        max_ongoing_requests=config.ingress_max_ongoing_requests,
        ray_actor_options={"num_cpus": config.ingress_num_cpus},
    ).bind(handles, config.auth_token_env, generator.guidable, {s: generator.meta.form_mix(s) for s in styles})


def resource_needs(config: ServeConfig, styles: tuple[str, ...]) -> tuple[dict[str, float], str]:
    """What the application needs of the cluster to become ready, and in words: every style's
    ``min_replicas`` and the ingress's replicas (Serve's controller and proxy take no CPU). Until
    they all run, ``serve.run`` waits; on a cluster too small, forever."""
    replicas = sum(config.autoscaling_for(style).min_replicas for style in styles)
    cpus = replicas * config.replica_num_cpus + config.ingress_replicas * config.ingress_num_cpus
    need = {"CPU": cpus, **({"GPU": replicas * config.replica_num_gpus} if config.replica_num_gpus else {})}
    return need, (f"serving {len(styles)} style(s) ({replicas} replica(s) at least, {config.replica_num_cpus:g} CPU "
                  f"each, and {config.ingress_replicas} ingress replica(s) at {config.ingress_num_cpus:g} CPU; "
                  "min_replicas, replica_num_cpus and styles set how much)")


def run_server(config: ServeConfig, num_cpus: int | None = None) -> None:
    """``musicgen serve``: deploy on the cluster in RAY_ADDRESS (or a local one) and serve until Ctrl-C."""
    from musicgen.runtime import init_ray, quiet_ray_loggers

    app = build_app(config)  # a bad model or style fails here, before any Ray process starts
    styles = config.styles or MelodyGenerator.from_artifact(resolve_model(config.model), device="cpu",
                                                            precision="fp32").styles
    init_ray(num_cpus, *resource_needs(config, tuple(styles)))
    serve.start(http_options={"host": config.host, "port": config.port})
    serve.run(app, name=APP_NAME, route_prefix="/")
    quiet_ray_loggers()  # without --verbose: Serve's driver-side logger too, should starting it have reset it
    url = f"http://{config.host}:{config.port}"
    print(f"musicgen is serving {config.model} at {url}/v1/styles; API docs: {url}/docs. Ctrl-C stops it.", flush=True)
    try:  # until SIGTERM or Ctrl-C (musicgen.stopping raises KeyboardInterrupt): exit 143 or 130
        threading.Event().wait()
    finally:
        serve.shutdown()
