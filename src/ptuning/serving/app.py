"""The HTTP API of `ptuning serve` (FastAPI): a thin layer over `MultiTaskPredictor` + `MicroBatcher`.

  GET    /health              liveness, backbone, task count, inputs pending, batch and 5xx counters
  GET    /v1/tasks            the served tasks: name and task type; with the admin token also labels,
                              prompt length, method and checkpoint folder
  POST   /v1/predict          {"task": NAME, "inputs": [...]} -> {"task": NAME, "outputs": [...]}
                              {"tasks": [A, B], "inputs": [...]} -> {"tasks": [A, B], "outputs": {A: [...], B: [...]}}
  POST   /v1/tasks/{name}     {"path": CHECKPOINT_DIR} adds a task while serving (201)
  DELETE /v1/tasks/{name}     removes a task; requests already accepted still get answers
  GET    /openapi.json        the OpenAPI schema (and /docs, Swagger UI, only with `docs=True`)

Errors: 400 a Host header not allowed, 401 admin without the right bearer token, 403 task admin
disabled, 404 unknown task (the body lists the known ones) or path, 408 request headers or body
not in within their deadlines, 409 a task name already served, 413 too many inputs / characters /
bytes / tasks / model rows, 415 a body that is not JSON, 422 malformed JSON, a wrong field or
text that is not valid Unicode (the `loc` names it), 500 a fault of the server (counted by
/health), 503 queue full or shutting down (with Retry-After), 507 `max_tasks` tasks served already.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .._version import __version__
from ..checkpoint import CONFIG_NAME
from ..errors import DataError, error_line
from .batcher import MicroBatcher
from .errors import InvalidTaskNameError, QueueFullError, ShuttingDownError, TaskExistsError, UnknownTaskError
from .guards import Answers, BodyLimit, Guard, is_admin
from .predictor import MultiTaskPredictor
from .protocol import MAX_HEADER_BYTES, header_timeout_protocol
from .responses import (
    SafeJSONResponse,
    bad_unicode,
    characters,
    data_error,
    error_response,
    validation_error,
    validation_errors,
)
from .settings import ServeSettings

logger = logging.getLogger("ptuning.serve")


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


class TaskSummary(BaseModel):
    """A task as GET /v1/tasks shows it to clients without the admin token."""

    model_config = ConfigDict(extra="forbid")
    name: str
    task_type: str


class TaskInfo(BaseModel):
    """A task as the admin sees it: also its labels, prompt and checkpoint folder."""

    name: str
    task_type: str
    labels: list[str]
    num_choices: int | None = None
    prompt_length: int
    method: str
    prompted_layers: list[int]
    max_length: int = Field(description="tokens per sequence for this task (longer inputs are truncated)")
    checkpoint: str


class TasksResponse(BaseModel):
    backbone: str
    backbone_fingerprint: str
    max_length: int = Field(description="the server's limit on tokens per sequence (each task's: its own)")
    tasks: list[TaskInfo] | list[TaskSummary] = Field(
        description="every task's name and type; with the admin token, each task's full info"
    )


class AddTaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="a checkpoint folder on the server's disk, made for the served backbone")


class ErrorResponse(BaseModel):
    detail: Any
    known_tasks: list[str] | None = None


async def _until_disconnected(request: Request) -> None:
    """Returns when the client has gone (the body was read already: only a disconnect can come)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _usable_checkpoint(path: str) -> bool:
    """True when `path` is a folder with a readable checkpoint config (never says which part failed)."""
    try:
        return (Path(path) / CONFIG_NAME).is_file()
    except (OSError, ValueError):
        return False


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
        default_response_class=SafeJSONResponse,
        # Swagger UI loads its scripts from a public CDN: only on request; ReDoc not at all
        docs_url="/docs" if settings.docs else None,
        redoc_url=None,
    )
    # "/v1/tasks/x/" is a 404 like any unknown path, not a redirect to "/v1/tasks/x"
    app.router.redirect_slashes = False
    answers: dict[str, int] = {}
    app.state.predictor = predictor
    app.state.batcher = batcher
    app.state.settings = settings
    app.state.answers = answers
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, timeout=settings.body_timeout_s)
    app.add_middleware(Guard, settings=settings)
    app.add_middleware(Answers, counts=answers)  # added last: runs first, sees every answer

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_errors(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI: "There was an error parsing the body" (e.g. not UTF-8)
            return validation_error(["body"], f"the body cannot be parsed as JSON ({exc.detail})")
        return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))

    retry = {"Retry-After": "1"}
    admin_lock = asyncio.Lock()  # one task added at a time: the max_tasks count cannot race

    @app.get("/health", summary="liveness and counters")
    async def health() -> dict[str, Any]:
        return {
            "status": "shutting_down" if batcher.closing else "ok",
            "backbone": predictor.backbone_name,
            "tasks": len(predictor.task_names),
            "pending_inputs": batcher.pending,
            **batcher.stats,
            **answers,
        }

    @app.get(
        "/v1/tasks",
        response_model=TasksResponse,
        summary="the served tasks (their checkpoints and prompts with the admin token only)",
    )
    async def list_tasks(request: Request):
        admin = is_admin(dict(request.scope["headers"]), settings)
        tasks = predictor.tasks()
        return SafeJSONResponse(
            {
                "backbone": predictor.backbone_name,
                "backbone_fingerprint": predictor.backbone_fingerprint,
                "max_length": predictor.max_length,
                "tasks": [
                    task.info() if admin else {"name": task.name, "task_type": task.spec.task_type}
                    for task in tasks
                ],
            }
        )

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="predict with one task, or with several tasks for the same inputs",
        response_model_exclude_none=True,
        responses={
            404: {"model": ErrorResponse, "description": "unknown task"},
            408: {"model": ErrorResponse, "description": "the body did not arrive within its deadline"},
            413: {"model": ErrorResponse, "description": "too many inputs, characters, tasks or model rows"},
            500: {"model": ErrorResponse, "description": "a fault of the server (counted by /health)"},
            503: {"model": ErrorResponse, "description": "queue full or shutting down"},
        },
    )
    async def predict(body: PredictRequest, request: Request):
        # the checks walk every name and input: off the event loop, which must keep answering
        # /health and other requests whatever a body holds
        refused, served = await run_in_threadpool(check_request, body)
        if refused is not None:
            return refused
        if batcher.closing:
            return error_response(503, "the server is shutting down", retry)
        try:
            prepared = await run_in_threadpool(prepare_request, served, body.inputs)
        except DataError as exc:
            return data_error(exc)
        if isinstance(prepared, JSONResponse):
            return prepared
        try:
            futures = batcher.submit_many(prepared)  # queued together: one batch when the rows fit
        except (QueueFullError, ShuttingDownError) as exc:
            return error_response(503, str(exc), retry)
        answers = [asyncio.wrap_future(future) for future in futures]
        everything = asyncio.gather(*answers, return_exceptions=True)
        gone = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait({everything, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not everything.done():  # the client left: drop its queued work (a running batch finishes)
            everything.cancel()
            return error_response(499, "the client closed the connection")
        logits = everything.result()
        for result in logits:
            if isinstance(result, ShuttingDownError):  # not started before the shutdown deadline
                return error_response(503, str(result), retry)
            if isinstance(result, BaseException):
                raise result
        outputs = [
            await run_in_threadpool(predictor.format, prepared_task, output)
            for prepared_task, output in zip(prepared, logits, strict=True)
        ]
        # answered as strict ASCII JSON here, not through the response model's serializer, which
        # fails on text that is not valid Unicode (a label of a checkpoint, echoed back)
        if body.task is not None:
            return SafeJSONResponse({"task": body.task, "outputs": outputs[0]})
        names = [task.name for task in served]
        return SafeJSONResponse({"tasks": names, "outputs": dict(zip(names, outputs, strict=True))})

    def check_request(body: PredictRequest) -> tuple[JSONResponse | None, list]:
        """(an error answer, []) or (None, the served tasks): every check before tokenizing."""
        if body.tasks is not None and len(body.tasks) > settings.max_tasks:
            return error_response(
                413,
                f"{len(body.tasks)} tasks in one request; this server serves at most {settings.max_tasks}",
            ), []
        bad = (
            bad_unicode(body.task, ["body", "task"])
            or bad_unicode(body.tasks, ["body", "tasks"])
            or bad_unicode(body.inputs, ["body", "inputs"])
        )
        if bad:
            return validation_error(*bad), []
        if (body.task is None) == (body.tasks is None):
            where = ["body", "task"] if body.task is None else ["body", "tasks"]
            return validation_error(where, "give either 'task' (one task) or 'tasks' (a list of tasks)"), []
        names = [body.task] if body.task is not None else body.tasks
        try:
            served = predictor.tasks_for(names)
        except UnknownTaskError as exc:
            return error_response(404, str(exc), known_tasks=exc.known), []
        except ValueError as exc:
            return validation_error(["body", "tasks"], str(exc)), []
        if len(body.inputs) > settings.max_inputs:
            return error_response(
                413, f"{len(body.inputs)} inputs in one request; the limit is {settings.max_inputs}"
            ), []
        for index, item in enumerate(body.inputs):
            size = characters(item)
            if size > settings.max_chars:
                return error_response(
                    413, f"input {index} has {size} characters; the limit is {settings.max_chars}"
                ), []
        if len(body.inputs) * len(served) > settings.max_queue:
            return error_response(
                413,
                f"{len(body.inputs)} inputs x {len(served)} tasks in one request; the queue holds {settings.max_queue}",
            ), []
        return None, served

    def prepare_request(served: list, inputs: list) -> list | JSONResponse:
        """Each task's prepared request (DataError for an input a task cannot take), or a 413 once
        the model rows counted so far pass `max_rows` (the tasks after it are not tokenized)."""
        prepared = []
        rows = 0
        for task in served:
            prepared.append(predictor.prepare(task, inputs))
            rows += prepared[-1].num_rows
            if rows > settings.max_rows:
                what = f"{len(inputs)} inputs" + (f" x {len(served)} tasks" if len(served) > 1 else "")
                return error_response(
                    413,
                    f"this request needs {'more than ' if task is not served[-1] else ''}{rows} model rows "
                    f"({what}; a QA context longer than the sequence counts one row per window, a "
                    f"multiple-choice input one per choice); the limit is {settings.max_rows} per request",
                )
        return prepared

    @app.post(
        "/v1/tasks/{name}",
        response_model=TaskInfo,
        status_code=201,
        summary="add a task from a checkpoint on the server's disk",
        responses={
            401: {"model": ErrorResponse, "description": "no or a wrong admin token"},
            403: {"model": ErrorResponse, "description": "task admin disabled"},
            409: {"model": ErrorResponse, "description": "the name is served already"},
            415: {"model": ErrorResponse, "description": "the body is not JSON"},
            507: {"model": ErrorResponse, "description": "max_tasks tasks are served already"},
        },
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
        if not settings.admin_enabled:  # the Guard middleware refuses first; kept for direct calls
            return error_response(403, "adding and removing tasks is disabled on this server")
        path = body if isinstance(body, str) else body.path
        loc = ["body"] if isinstance(body, str) else ["body", "path"]
        bad = bad_unicode(name, ["path", "name"]) or bad_unicode(path, loc)
        if bad:
            return validation_error(*bad)
        if not _usable_checkpoint(path):  # one answer for missing, unreadable, file or folder
            return validation_error(
                loc, f"cannot serve {path!r}: not a checkpoint folder this server can read"
            )
        async with admin_lock:
            if len(predictor.task_names) >= settings.max_tasks:
                return error_response(
                    507, f"this server serves {settings.max_tasks} tasks, its limit; remove one before adding"
                )
            try:
                task = await run_in_threadpool(predictor.add_task, name, path)
            except TaskExistsError as exc:
                return error_response(409, str(exc))
            except (ValueError, OSError) as exc:  # CheckpointError is a ValueError too: the path's fault
                return validation_error(
                    ["path", "name"] if isinstance(exc, InvalidTaskNameError) else loc, error_line(exc)
                )
            except Exception as exc:  # a checkpoint the validator let through: still the path's fault
                logger.exception("adding task %r from %s failed", name, path)
                return validation_error(loc, f"cannot load the checkpoint {path!r} ({type(exc).__name__})")
        return SafeJSONResponse(task.info(), status_code=201)  # strict JSON whatever its labels hold

    @app.delete(
        "/v1/tasks/{name}",
        summary="remove a task (requests already accepted are still answered)",
        responses={
            401: {"model": ErrorResponse, "description": "no or a wrong admin token"},
            403: {"model": ErrorResponse, "description": "task admin disabled"},
            404: {"model": ErrorResponse, "description": "unknown task"},
        },
    )
    async def remove_task(name: str):
        if not settings.admin_enabled:
            return error_response(403, "adding and removing tasks is disabled on this server")
        try:
            task = predictor.remove_task(name)
        except UnknownTaskError as exc:
            return error_response(404, str(exc), known_tasks=exc.known)
        return {"removed": task.name, "tasks": predictor.task_names}

    return app


def server_config(app: FastAPI, **kwargs: Any) -> uvicorn.Config:
    """uvicorn's config for `app` with the deadlines of its `ServeSettings`: request headers within
    `header_timeout_s` of connecting or of the last answer (`ptuning.serving.protocol`), idle
    keep-alive connections closed after `keep_alive_s`, headers at most 16 KiB. `kwargs`: the
    other `uvicorn.Config` arguments (host, port, log_level, ...)."""
    settings: ServeSettings = app.state.settings
    return uvicorn.Config(
        app,
        http=header_timeout_protocol(settings.header_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        **kwargs,
    )


class GracefulServer(uvicorn.Server):
    """uvicorn's server with a bounded, answer-everything shutdown (SIGTERM, Ctrl-C, should_exit).

    uvicorn stops accepting connections and, after `timeout_graceful_shutdown`, cancels the
    requests still running, which would end them in 500s. So the shutdown first drains the batcher:
    no new work, the queue answered until a deadline short of uvicorn's timeout, then every request
    not started gets 503 (with Retry-After); the batch running then is the last."""

    def __init__(self, config: uvicorn.Config, batcher: MicroBatcher | None = None) -> None:
        super().__init__(config)
        self.batcher = batcher or config.app.state.batcher

    async def shutdown(self, sockets=None) -> None:
        timeout = self.config.timeout_graceful_shutdown
        self.batcher.drain(None if timeout is None else max(0.0, min(0.8 * timeout, timeout - 1.0)))
        await super().shutdown(sockets)
