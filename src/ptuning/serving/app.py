"""The HTTP API of `ptuning serve` (FastAPI): a thin layer over `MultiTaskPredictor` + `MicroBatcher`.

  GET    /health              liveness, backbone, task count, inputs pending, batch counters
  GET    /v1/tasks            the served tasks: name, task type, labels, prompt length, method
  POST   /v1/predict          {"task": NAME, "inputs": [...]} -> {"task": NAME, "outputs": [...]}
                              {"tasks": [A, B], "inputs": [...]} -> {"tasks": [A, B], "outputs": {A: [...], B: [...]}}
  POST   /v1/tasks/{name}     {"path": CHECKPOINT_DIR} adds a task while serving (201)
  DELETE /v1/tasks/{name}     removes a task; requests already accepted still get answers
  GET    /docs, /openapi.json the OpenAPI documentation

Errors: 404 unknown task (the body lists the known ones), 409 a task name already served, 413 too
many inputs / characters / bytes, 422 malformed JSON or a wrong field (the `loc` names it),
503 queue full or shutting down (with Retry-After), 403 task admin disabled.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .. import __version__
from ..data.spec import DataError
from .engine import (
    InvalidTaskNameError,
    MicroBatcher,
    MultiTaskPredictor,
    QueueFullError,
    ShuttingDownError,
    TaskExistsError,
    UnknownTaskError,
)


@dataclass
class ServeSettings:
    """Batching and limits. `max_queue` counts inputs accepted and not yet answered."""

    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_inputs: int = 64
    max_chars: int = 10_000
    allow_admin: bool = True

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "max_inputs", "max_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < self.max_inputs:
            raise ValueError(
                f"max_queue ({self.max_queue}) must be >= max_inputs ({self.max_inputs}), "
                "or a full-size request could never be accepted"
            )

    @property
    def max_body_bytes(self) -> int:
        # JSON may spend up to 12 bytes on one character (an escaped surrogate pair), plus structure.
        return self.max_inputs * (self.max_chars * 12 + 1024) + 65536


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"task": "sst2", "inputs": ["a gripping, funny film"]},
                {"tasks": ["sst2", "conll"], "inputs": ["John loved Paris"]},
            ]
        },
    )
    task: str | None = Field(default=None, description="name of a served task (GET /v1/tasks)")
    tasks: list[str] | None = Field(
        default=None,
        min_length=1,
        description="instead of `task`: several served tasks, each answering every input (one batched pass)",
    )
    inputs: list[str | dict[str, Any]] = Field(
        min_length=1,
        description="inputs as for `ptuning predict`: a string, or an object with the task type's fields "
        "(text/text_pair; context/choices; tokens; question/context)",
    )


class PredictResponse(BaseModel):
    task: str | None = None
    tasks: list[str] | None = None
    outputs: list[dict[str, Any]] | dict[str, list[dict[str, Any]]] = Field(
        description="one answer per input, as `ptuning predict` writes; for `tasks`: {task: answers}"
    )


class TaskInfo(BaseModel):
    name: str
    task_type: str
    labels: list[str]
    num_choices: int | None = None
    prompt_length: int
    method: str
    prompted_layers: list[int]
    checkpoint: str


class TasksResponse(BaseModel):
    backbone: str
    backbone_fingerprint: str
    max_length: int
    tasks: list[TaskInfo]


class AddTaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="a checkpoint folder on the server's disk, made for the served backbone")


class ErrorResponse(BaseModel):
    detail: Any
    known_tasks: list[str] | None = None


def _error(status: int, detail: Any, headers: dict[str, str] | None = None, **extra) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def _validation_error(loc: list, message: str) -> JSONResponse:
    return _error(422, [{"type": "value_error", "loc": loc, "msg": message}])


_INPUT_FIELD = re.compile(r"^input (\d+): (?:field '([^']+)')?")


def _data_error(exc: DataError) -> JSONResponse:
    """A DataError of `parse_input` ("input 3: field 'text' must be ...") as a 422 naming the field."""
    message = str(exc)
    loc: list[Any] = ["body", "inputs"]
    match = _INPUT_FIELD.match(message)
    if match:
        loc.append(int(match.group(1)))
        if match.group(2):
            loc.append(match.group(2))
    return _validation_error(loc, message)


def _characters(item: Any) -> int:
    if isinstance(item, str):
        return len(item)
    if isinstance(item, dict):
        return sum(_characters(v) for v in item.values())
    if isinstance(item, list):
        return sum(_characters(v) for v in item)
    return 0


class _BodyLimit:
    """Pure ASGI middleware: 413 for request bodies over `limit` bytes, before they are buffered."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(scope, receive, send)
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge(413, f"request body larger than {self.limit} bytes")
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send) -> None:
        response = _error(413, f"request body larger than {self.limit} bytes")
        await response(scope, receive, send)


class _TooLarge(HTTPException):
    """Raised from `receive`: FastAPI passes HTTP exceptions of its body reading through (413)."""


def create_app(
    predictor: MultiTaskPredictor,
    settings: ServeSettings | None = None,
) -> FastAPI:
    """The FastAPI app; its lifespan starts the micro-batcher and, on shutdown, answers all it accepted."""
    settings = settings or ServeSettings()
    batcher = MicroBatcher(
        predictor,
        max_batch_size=settings.max_batch_size,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(batcher.close)

    app = FastAPI(
        title="ptuning serve",
        version=__version__,
        description="Many tasks' prompts (P-Tuning v2 and friends) served from one frozen backbone, "
        "with requests of different tasks batched together.",
        lifespan=lifespan,
    )
    app.state.predictor = predictor
    app.state.batcher = batcher
    app.state.settings = settings
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)

    retry = {"Retry-After": "1"}

    @app.get("/health", summary="liveness and counters")
    async def health() -> dict[str, Any]:
        return {
            "status": "shutting_down" if batcher.closing else "ok",
            "backbone": predictor.backbone_name,
            "tasks": len(predictor.task_names),
            "pending_inputs": batcher.pending,
            **batcher.stats,
        }

    @app.get("/v1/tasks", response_model=TasksResponse, summary="the served tasks")
    async def list_tasks() -> dict[str, Any]:
        return {
            "backbone": predictor.backbone_name,
            "backbone_fingerprint": predictor.backbone_fingerprint,
            "max_length": predictor.max_length,
            "tasks": [task.info() for task in predictor.tasks()],
        }

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="predict with one task, or with several tasks for the same inputs",
        response_model_exclude_none=True,
        responses={
            404: {"model": ErrorResponse, "description": "unknown task"},
            413: {"model": ErrorResponse, "description": "too many inputs or characters"},
            503: {"model": ErrorResponse, "description": "queue full or shutting down"},
        },
    )
    async def predict(body: PredictRequest):
        if (body.task is None) == (body.tasks is None):
            where = ["body", "task"] if body.task is None else ["body", "tasks"]
            return _validation_error(where, "give either 'task' (one task) or 'tasks' (a list of tasks)")
        names = [body.task] if body.task is not None else body.tasks
        try:
            served = predictor.tasks_for(names)
        except UnknownTaskError as exc:
            return _error(404, str(exc), known_tasks=exc.known)
        except ValueError as exc:
            return _validation_error(["body", "tasks"], str(exc))
        if len(body.inputs) > settings.max_inputs:
            return _error(
                413, f"{len(body.inputs)} inputs in one request; the limit is {settings.max_inputs}"
            )
        for index, item in enumerate(body.inputs):
            size = _characters(item)
            if size > settings.max_chars:
                return _error(413, f"input {index} has {size} characters; the limit is {settings.max_chars}")
        if len(body.inputs) * len(served) > settings.max_queue:
            return _error(
                413,
                f"{len(body.inputs)} inputs x {len(served)} tasks in one request; the queue holds {settings.max_queue}",
            )
        if batcher.closing:
            return _error(503, "the server is shutting down", retry)
        try:
            prepared = [await run_in_threadpool(predictor.prepare, task, body.inputs) for task in served]
        except DataError as exc:
            return _data_error(exc)
        try:
            futures = batcher.submit_many(prepared)  # queued together: one batch when the rows fit
        except (QueueFullError, ShuttingDownError) as exc:
            return _error(503, str(exc), retry)
        logits = await asyncio.gather(*(asyncio.wrap_future(future) for future in futures))
        outputs = [
            await run_in_threadpool(predictor.format, request, output)
            for request, output in zip(prepared, logits, strict=True)
        ]
        if body.task is not None:
            return {"task": body.task, "outputs": outputs[0]}
        return {"tasks": names, "outputs": dict(zip(names, outputs, strict=True))}

    @app.post(
        "/v1/tasks/{name}",
        response_model=TaskInfo,
        status_code=201,
        summary="add a task from a checkpoint on the server's disk",
        responses={409: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
    )
    async def add_task(
        name: str,
        body: Annotated[
            AddTaskRequest | str,
            Body(
                description='{"path": CHECKPOINT_DIR}, or the folder as a bare JSON string',
                examples=[{"path": "outputs/rte"}, "outputs/rte"],
            ),
        ],
    ):
        if not settings.allow_admin:
            return _error(403, "adding and removing tasks is disabled on this server")
        path = body if isinstance(body, str) else body.path
        try:
            task = await run_in_threadpool(predictor.add_task, name, path)
        except TaskExistsError as exc:
            return _error(409, str(exc))
        except (ValueError, OSError) as exc:  # CheckpointError is a ValueError too: the path's fault
            if isinstance(exc, InvalidTaskNameError):
                loc = ["path", "name"]
            else:
                loc = ["body"] if isinstance(body, str) else ["body", "path"]
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return _validation_error(loc, message)
        return task.info()

    @app.delete(
        "/v1/tasks/{name}",
        summary="remove a task (requests already accepted are still answered)",
        responses={404: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
    )
    async def remove_task(name: str):
        if not settings.allow_admin:
            return _error(403, "adding and removing tasks is disabled on this server")
        try:
            task = predictor.remove_task(name)
        except UnknownTaskError as exc:
            return _error(404, str(exc), known_tasks=exc.known)
        return {"removed": task.name, "tasks": predictor.task_names}

    return app
