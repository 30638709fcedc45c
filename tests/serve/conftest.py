"""A real uvicorn server on an ephemeral port, in a thread of the test process, over a tiny model."""

import inspect
import json
import socket
import textwrap
import threading
import time

import pytest
import torch
import uvicorn

from lightcoder.infer.completer import Completer
from lightcoder.model.config import get_preset
from lightcoder.model.hf import save_checkpoint
from lightcoder.model.llama import Transformer
from lightcoder.serve.app import ServerConfig, create_app
from lightcoder.serve.schemas import Limits
from lightcoder.tokenizer.config import TokenizerConfig
from lightcoder.tokenizer.train import train_tokenizer


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("serve_run")
    tokenizer = train_tokenizer([inspect.getsource(textwrap), inspect.getsource(json)], TokenizerConfig(vocab_size=512))
    tokenizer.save(run / "tokenizer")
    model = Transformer(get_preset("lc-tiny", init_std=0.2))
    model.init_weights(0)
    save_checkpoint(model, model.cfg, run / "ckpt" / "step_000000", tokenizer_dir=run / "tokenizer")
    return run


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
