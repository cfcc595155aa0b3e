"""The web app of `argen serve` (Starlette on uvicorn): the page, the methods, and runs streamed as server-sent
events, each decode step as it happens (argen.live over the one decode loop; no model code here).

    GET  /                the page (static/: plain HTML, JS and CSS, nothing fetched from elsewhere)
    GET  /api/methods     the methods, their classes, the request defaults and limits
    GET  /api/status      runs running, waiting, finished and cancelled
    POST /api/generate    {"method", "class", "images", "seed", "guidance", "temperature", "top_k", "top_p",
                          "speculative"} ->
                          events: queued {place}, step {frame} (each step), done {frame}, replay {frame} (partial
                          images of a few steps, rendered after the run), error {message}

One run at a time per process, in one sampling thread; the others wait in a queue and are told their place. A
client that goes away (a closed tab) cancels its run at the next step. Every error is JSON with a one-line message.
Only the server's own page may start runs, and bodies are bounded before they are read (argen.serve.guard).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import torch
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from argen.live import DISPLAY_BUDGET, Cancelled, Frame, generate_live
from argen.serve.methods import Method, load_methods
from argen.serve.guard import Guard
from argen.serve.requests import DEFAULTS, LIMITS, RequestError, RunRequest, parse_run
from argen.serve.runs import QueueFull, RunQueue

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 4096
MAX_WAITING = 32


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status)


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


class Service:
    """The loaded methods, the run queue and the one sampling thread, with counters for /api/status."""

    def __init__(self, methods: dict[str, Method], budget: float = DISPLAY_BUDGET, max_waiting: int = MAX_WAITING):
        self.methods, self.budget = methods, budget
        self.queue = RunQueue(max_waiting)
        self.sampler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argen-sampler")
        self.counts = {"finished": 0, "cancelled": 0, "failed": 0}

    def _run(self, request: RunRequest, sink, cancel: threading.Event) -> Frame:
        method = self.methods[request.method]
        return generate_live(
            method.pipeline,
            [request.label] * request.images,
            sink,
            torch.Generator().manual_seed(request.seed),
            budget=self.budget,
            cancel=cancel,
            render_cost=method.render_cost * request.images,
            **request.sampling_options(method.sampling),
        )

    async def events(self, request: RunRequest, ticket: object) -> AsyncIterator[str]:
        """The run's events; if the client leaves (this generator is cancelled), the run stops at its next step."""
        cancel, worker = threading.Event(), None
        try:
            async for place in self.queue.turn(ticket):
                yield _event("queued", {"place": place})
            loop = asyncio.get_running_loop()
            frames: asyncio.Queue = asyncio.Queue()

            def sink(frame: Frame) -> None:  # in the sampling thread: its cost counts in the display budget
                event = _event(frame.stage if frame.stage in ("done", "replay") else "step", frame.to_json())
                loop.call_soon_threadsafe(frames.put_nowait, event)

            worker = loop.run_in_executor(self.sampler, self._run, request, sink, cancel)
            worker.add_done_callback(lambda _: frames.put_nowait(None))  # after every frame the thread sent
            while (event := await frames.get()) is not None:
                yield event
            error = worker.exception()
            if error is not None:
                if not isinstance(error, ValueError):  # a bug: its traceback goes to the server's log only
                    traceback.print_exception(error, file=sys.stderr)
                yield _event("error", {"message": " ".join(str(error).split()) or type(error).__name__})
        finally:
            cancel.set()
            outcome = "cancelled"  # while it waited
            if worker is not None:
                with anyio.CancelScope(shield=True):  # the next run starts only once this one has stopped
                    await asyncio.wait([worker])
                error = worker.exception()
                outcome = "finished" if error is None else "cancelled" if isinstance(error, Cancelled) else "failed"
            self.counts[outcome] += 1
            self.queue.leave(ticket)

    async def generate(self, request: Request) -> Response:
        # The Guard refused a declared Content-Length over the limit; a body without one is counted as it arrives.
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return _error(413, f"the body has more than {MAX_BODY_BYTES} bytes; at most {MAX_BODY_BYTES}")
        except ClientDisconnect:
            print(f"argen serve: a client ({_client(request)}) hung up while sending its request", file=sys.stderr)
            return Response(status_code=400)  # nobody reads it
        try:
            run = parse_run(json.loads(body or b"null"), self.methods)
        except RecursionError:
            return _error(422, "the body is nested too deeply; a run is one flat JSON object")
        except ValueError as error:  # json.JSONDecodeError, or an integer of more digits than Python parses
            return _error(422, f"the body is not JSON: {error}")
        except RequestError as error:
            return _error(error.status, str(error))
        try:
            ticket = self.queue.join()
        except QueueFull as error:
            return _error(503, str(error))
        return StreamingResponse(
            self.events(run, ticket),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def describe(self, request: Request) -> Response:
        return JSONResponse(
            {"methods": [method.describe() for method in self.methods.values()], "defaults": DEFAULTS, "limits": LIMITS}
        )

    async def status(self, request: Request) -> Response:
        return JSONResponse({"running": int(self.queue.running), "waiting": self.queue.waiting, **self.counts})


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _error(error.status_code, error.detail)


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


async def _server_error(request: Request, error: Exception) -> Response:
    # Starlette re-raises the error after this answer and uvicorn logs its traceback: once, not here too.
    return _error(500, f"internal error ({type(error).__name__}); the server's log has the details")


def create_app(
    methods: dict[str, Method],
    budget: float = DISPLAY_BUDGET,
    max_waiting: int = MAX_WAITING,
    allowed_hosts: tuple[str, ...] = (),
) -> Starlette:
    """The app behind its Guard (argen.serve.guard): `allowed_hosts` are host names answered besides addresses and
    localhost."""
    service = Service(methods, budget, max_waiting)
    routes = [
        Route("/", _index),
        Route("/api/methods", service.describe),
        Route("/api/status", service.status),
        Route("/api/generate", service.generate, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        middleware=[Middleware(Guard, max_body_bytes=MAX_BODY_BYTES, allowed_hosts=allowed_hosts)],
    )
    app.state.service = service
    return app


def serve(
    checkpoints: list[str | Path], host: str = "127.0.0.1", port: int = 8000, allowed_hosts: tuple[str, ...] = ()
) -> None:
    """Load every method once, then serve the page until interrupted."""
    methods = load_methods(checkpoints)
    print(f"argen serve: {len(methods)} methods ({', '.join(methods)}) on http://{host}:{port}/", flush=True)
    uvicorn.run(create_app(methods, allowed_hosts=allowed_hosts), host=host, port=port, log_level="warning")
