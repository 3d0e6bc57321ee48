"""What the HTTP tests share: a real uvicorn server in a thread."""

from __future__ import annotations

import threading
import time

import uvicorn

from ptuning.serving.app import server_config


class ServerThread:
    """uvicorn in a background thread, on 127.0.0.1 and a port the OS picks, configured as `ptuning
    serve` configures it (the header deadline, keep-alive and header size of its `ServeSettings`)."""

    def __init__(self, app) -> None:
        config = server_config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
