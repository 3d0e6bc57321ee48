"""`ptuning serve`: many tasks' prompts over HTTP from one frozen backbone."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

from .options import add_bf16_argument

DESCRIPTION = """Serve several prompt-only checkpoints (p-tuning-v2, prefix-tuning, prompt-tuning) over HTTP.
The backbone is loaded once; every task adds only its prompt and head. Requests of different
tasks are batched together (each row gets its own task's prefix in one forward pass).

All checkpoints must be made for the same backbone; fine-tune checkpoints carry their own
backbone and are refused (serve them with `ptuning predict`).

endpoints (OpenAPI schema at /openapi.json; Swagger UI at /docs with --docs):
  GET  /health               GET /v1/tasks
  POST /v1/predict           {"task": "sst2", "inputs": ["a gripping, funny film"]}
  POST /v1/tasks/NAME        {"path": "outputs/rte-p-tuning-v2"}   (add a task while serving)
  DELETE /v1/tasks/NAME      (remove it; requests already accepted are answered)

admin (POST/DELETE /v1/tasks) needs a token: --admin-token or $PTUNING_ADMIN_TOKEN; clients send
`Authorization: Bearer TOKEN`. Without a token admin is off (--allow-admin-without-token turns
it on without one, on a loopback address only). Only the Host names in --allowed-host (and the
bind address) are answered.

examples:
  ptuning serve --prompt sst2=outputs/sst2-p-tuning-v2 --prompt conll=outputs/conll03-p-tuning-v2
  ptuning serve --prompt outputs/rte-p-tuning-v2      # served as task "rte-p-tuning-v2"
  ptuning serve --prompts-dir outputs --port 8080 --max-batch-size 64 --max-wait-ms 10
  PTUNING_ADMIN_TOKEN=$(openssl rand -hex 16) ptuning serve --prompts-dir outputs --host 0.0.0.0 \
      --allowed-host models.example.org"""

ADMIN_TOKEN_ENV = "PTUNING_ADMIN_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prompt",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a task to serve: NAME=CHECKPOINT_DIR, a checkpoint folder (named after it) or a folder of "
        "checkpoint folders (each named after its folder); repeatable",
    )
    parser.add_argument(
        "--prompts-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="serve every checkpoint folder inside DIR, named after its folder; repeatable",
    )
    parser.add_argument(
        "--backbone", default=None, help="load this backbone instead of the one the checkpoints name"
    )
    parser.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="(default: 8000; 0 picks a free port)")
    batching = parser.add_argument_group("batching")
    batching.add_argument(
        "--max-batch-size", type=int, default=32, help="model rows per forward pass (default: 32)"
    )
    batching.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a batch waits for more requests once the first arrived (default: 5)",
    )
    batching.add_argument(
        "--max-queue",
        type=int,
        default=1024,
        help="inputs accepted and not yet answered; past it requests get 503 (default: 1024)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-inputs", type=int, default=64, help="inputs per request (default: 64; 413 past it)"
    )
    limits.add_argument(
        "--max-chars", type=int, default=10_000, help="characters per input (default: 10000; 413 past it)"
    )
    limits.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="tokens per sequence for every task; longer inputs are truncated and flagged "
        "(default: each checkpoint's own, 256 where it recorded none)",
    )
    limits.add_argument(
        "--max-tasks", type=int, default=64, help="tasks served at once (default: 64; adding more: 507)"
    )
    limits.add_argument(
        "--max-rows",
        type=int,
        default=512,
        help="model rows per request, all its tasks together: a QA window and a multiple-choice "
        "choice count one each (default: 512; 413 past it)",
    )
    limits.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        help="seconds a request body may take to arrive, from its headers; then 408 (default: 30)",
    )
    limits.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds a connection may take to send a request's headers, from connecting or the "
        "previous answer; then 408 and closed (default: 10)",
    )
    security = parser.add_argument_group("security")
    security.add_argument(
        "--admin-token",
        default=None,
        help=f"token for POST/DELETE /v1/tasks (default: ${ADMIN_TOKEN_ENV}; none: admin is off)",
    )
    security.add_argument(
        "--allow-admin-without-token",
        action="store_true",
        help="admin without a token (only with a loopback --host)",
    )
    security.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host header name to answer besides the bind address (repeatable; '*' answers any)",
    )
    security.add_argument(
        "--no-admin", action="store_true", help="disable POST/DELETE /v1/tasks (adding and removing tasks)"
    )
    security.add_argument(
        "--docs",
        action="store_true",
        help="serve the Swagger UI at /docs (off by default: the browser loads its scripts from a "
        "public CDN); /openapi.json is always served",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM/Ctrl-C, how long to wait for accepted requests (default: 30 s)",
    )
    add_bf16_argument(parser, answers=True)
    parser.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )


def collect_prompts(prompts: list[str], prompt_dirs: list[str]) -> list[tuple[str, str]]:
    """(name, checkpoint folder) pairs from --prompt and --prompts-dir."""
    from ..checkpoint import CONFIG_NAME
    from ..errors import UserError

    pairs: list[tuple[str, str]] = []
    for spec in prompts:
        path = Path(spec)
        if "=" in spec and not (path / CONFIG_NAME).is_file():
            name, _, folder = spec.partition("=")
            if not Path(folder).is_dir():  # a folder's contents: the checkpoint validator's to judge
                raise UserError(f"--prompt {spec}: no such checkpoint folder {folder!r}")
            pairs.append((name.strip(), folder))
        elif path.is_dir() and not (path / CONFIG_NAME).is_file():
            found = sorted(p for p in path.iterdir() if (p / CONFIG_NAME).is_file())
            if not found:  # named here, not as --prompts-dir: the user gave --prompt
                raise UserError(
                    f"--prompt {spec}: not a checkpoint folder (no {CONFIG_NAME}) and no checkpoint "
                    "folders inside; expected NAME=CHECKPOINT_DIR, a checkpoint folder or a folder of them"
                )
            pairs.extend((p.name, str(p)) for p in found)  # a folder of checkpoints: one task each
        elif not path.is_dir():
            raise UserError(
                f"--prompt {spec}: no such checkpoint folder; expected NAME=CHECKPOINT_DIR or a folder"
            )
        else:
            pairs.append((path.resolve().name, spec))
    for folder in prompt_dirs:
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"--prompts-dir {folder}: no such folder")
        found = sorted(p for p in root.iterdir() if (p / CONFIG_NAME).is_file())
        if not found:
            hint = " (it is a checkpoint itself: use --prompt)" if (root / CONFIG_NAME).is_file() else ""
            raise UserError(f"--prompts-dir {folder}: no checkpoint folders inside{hint}")
        pairs.extend((p.name, str(p)) for p in found)
    if not pairs:
        raise UserError("nothing to serve: give --prompt NAME=CHECKPOINT_DIR or --prompts-dir DIR")
    seen: dict[str, str] = {}
    for name, folder in pairs:
        if name in seen:
            raise UserError(f"task name {name!r} is given twice ({seen[name]} and {folder})")
        seen[name] = folder
    return pairs


def bind(host: str, port: int) -> socket.socket:
    from ..errors import UserError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class _Stop(Exception):
    pass


def _stop(signum, frame):
    raise _Stop


LOOPBACK = ("127.0.0.1", "::1", "localhost")
WILDCARD = ("0.0.0.0", "::", "")


def allowed_hosts(host: str, extra: list[str]) -> tuple[str, ...]:
    """The Host header names answered: the bind address, the loopback names for a loopback or
    wildcard bind (and this machine's name for a wildcard one), and `extra`."""
    names = [] if host in WILDCARD else [host]
    if host in LOOPBACK or host in WILDCARD:
        names += list(LOOPBACK)
    if host in WILDCARD:
        names.append(socket.gethostname())
    return tuple(dict.fromkeys([*names, *extra]))


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..serving import InvalidTaskNameError, MultiTaskPredictor
    from ..serving.app import GracefulServer, create_app, server_config
    from ..serving.settings import ServeSettings

    token = args.admin_token if args.admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV) or None
    if args.allow_admin_without_token and args.host not in LOOPBACK:
        raise UserError(
            f"--allow-admin-without-token needs a loopback --host ({', '.join(LOOPBACK)}), not {args.host!r}; "
            f"set an admin token instead (--admin-token or ${ADMIN_TOKEN_ENV})"
        )
    try:
        settings = ServeSettings(
            max_batch_size=args.max_batch_size,
            max_wait_ms=args.max_wait_ms,
            max_queue=args.max_queue,
            max_inputs=args.max_inputs,
            max_chars=args.max_chars,
            allow_admin=not args.no_admin,
            admin_token=token,
            allow_admin_without_token=args.allow_admin_without_token,
            allowed_hosts=allowed_hosts(args.host, args.allowed_host),
            max_tasks=args.max_tasks,
            max_rows=args.max_rows,
            body_timeout_s=args.body_timeout,
            header_timeout_s=args.header_timeout,
            docs=args.docs,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    pairs = collect_prompts(args.prompt, args.prompts_dir)
    if len(pairs) > settings.max_tasks:
        raise UserError(f"{len(pairs)} tasks to serve but --max-tasks is {settings.max_tasks}")
    sock = bind(args.host, args.port)
    try:
        predictor = MultiTaskPredictor.from_checkpoints(
            pairs,
            backbone=args.backbone,
            max_length=args.max_seq_length,
            max_batch_size=args.max_batch_size,
            bf16=args.bf16,
        )
    except InvalidTaskNameError as exc:
        sock.close()
        raise UserError(str(exc)) from None
    except BaseException:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    names = ", ".join(predictor.task_names)
    docs = f"http://{shown}:{port}/docs" if settings.docs else f"http://{shown}:{port}/openapi.json"
    print(
        f"ptuning serve: {len(pairs)} task(s) ({names}) on backbone {predictor.backbone_name!r}; "
        f"listening on http://{shown}:{port} (docs: {docs})",
        file=sys.stderr,
        flush=True,
    )
    admin = (
        "on (bearer token)"
        if settings.admin_enabled and token
        else "on without a token (loopback)"
        if settings.admin_enabled
        else "off"
    )
    print(f"ptuning serve: task admin {admin}", file=sys.stderr, flush=True)
    if host not in LOOPBACK:
        print(
            "ptuning serve: warning: predictions have no authentication; put the server behind a proxy "
            "that authenticates clients if the network is not trusted",
            file=sys.stderr,
            flush=True,
        )
    config = server_config(
        create_app(predictor, settings),
        log_level=args.log_level,
        timeout_graceful_shutdown=args.shutdown_timeout,
        lifespan="on",
    )
    server = GracefulServer(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal: end with 0.
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        print("ptuning serve: error: the server did not start (see the log above)", file=sys.stderr)
        return 1
    print("ptuning serve: stopped", file=sys.stderr, flush=True)
    return 0
