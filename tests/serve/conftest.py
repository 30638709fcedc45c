"""A real uvicorn server on an ephemeral port, in a thread of the test process, over a tiny model."""

import socket
import threading
import time

import pytest
import torch
import uvicorn

from lightcoder.infer.completer import Completer
from lightcoder.serve.app import ServerConfig, create_app
from lightcoder.serve.schemas import Limits


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, make_tiny_run):
    return make_tiny_run(tmp_path_factory.mktemp("serve_run"))


class Server:
    def __init__(self, app):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def server(tiny_run):
    torch.manual_seed(0)
    completer = Completer.load(tiny_run)
    app = create_app(completer, ServerConfig(model_name="tiny", limits=Limits(max_tokens_limit=64, max_prompt_chars=20_000)))
    with Server(app) as s:
        yield s


@pytest.fixture(scope="session")
def completer(tiny_run):
    return Completer.load(tiny_run)


@pytest.fixture(scope="session")
def make_server():
    return Server
