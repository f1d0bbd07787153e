"""The HTTP layer of `python -m wler_jax.serve` (Starlette): the page, the JSON endpoints, and
uploads streamed to a temporary file within the byte limit.

Routes:
  GET  /              the page (`wler_jax.serve.page`)
  GET  /api/info      model and limits: {"workdir", "class_names", "threshold", "method",
                      "pooling", "width", "limits": {"max_bytes", "max_seconds"}}
  GET  /api/status    {"requests", "compiles", "compiles_at_warmup", "compiles_since_warmup",
                      "warmup_seconds", "pending"}
  POST /api/predict?name=FILE   body: the file's bytes, Content-Type its audio type
                      -> predict's JSON document for that one file (`UploadScorer.score_file`),
                      or {"error": "<one line>"} with 400 (empty body), 413 (too many bytes or
                      seconds), 415 (not audio, or a container that cannot be decoded), 422
                      (unreadable audio), 503 (too many requests waiting).

Scoring runs in worker threads (`workers` at once; XLA releases the GIL), so the event loop
keeps reading other uploads; the model and its compiled programs are shared by all requests.
"""
from __future__ import annotations

import os
import tempfile

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from wler_jax.serve import page
from wler_jax.serve.uploads import UploadError, UploadScorer, check_content_type, safe_name


DRAIN_FACTOR = 2  # a body up to this many times the byte limit is read to the end, then refused


def create_app(scorer: UploadScorer, *, workers: int = 2, max_pending: int = 32) -> Starlette:
    """The web application around one warmed-up `scorer`.

    Args:
      workers: uploads scored at once (threads); more wait their turn.
      max_pending: uploads accepted at once (scoring or waiting); beyond it 503.
    """
    limiter = anyio.CapacityLimiter(workers)
    state = {"pending": 0}

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page.PAGE, headers={"Cache-Control": "no-store"})

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(scorer.info())

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({**scorer.status(), "pending": state["pending"]})

    async def predict(request: Request) -> JSONResponse:
        if state["pending"] >= max_pending:
            return _error(503, f"the server is busy ({max_pending} uploads in progress); try "
                               "again in a moment")
        state["pending"] += 1
        path = None
        try:
            check_content_type(request.headers.get("content-type"))
            name = safe_name(request.query_params.get("name"))
            path = await _receive(request, scorer.limits.max_bytes,
                                  os.path.splitext(name)[1][:12])
            doc = await anyio.to_thread.run_sync(scorer.score_file, path, name,
                                                 limiter=limiter)
            return JSONResponse(doc)
        except UploadError as e:
            return _error(e.status, e.message)
        finally:
            state["pending"] -= 1
            if path is not None:
                os.unlink(path)

    return Starlette(routes=[Route("/", index), Route("/api/info", info),
                             Route("/api/status", status),
                             Route("/api/predict", predict, methods=["POST"])])


async def _receive(request: Request, max_bytes: int, suffix: str = "") -> str:
    """Stream the request body into a temporary file and return its path; UploadError 413
    past `max_bytes` (at once from Content-Length when it says so), 400 when empty."""
    too_large = UploadError(413, f"the upload is larger than {_mb(max_bytes)} (--max_upload_mb); "
                                 "send a shorter or compressed (FLAC, OGG) recording")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        if int(declared) <= DRAIN_FACTOR * max_bytes:
            await _drain(request, int(declared))
        raise too_large
    fd, path = tempfile.mkstemp(prefix="wler_upload_", suffix=suffix)
    received = 0
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:
                    await _drain(request, (DRAIN_FACTOR - 1) * max_bytes)
                    raise too_large
                f.write(chunk)
        if received == 0:
            raise UploadError(400, "no audio received: the request body is empty")
    except BaseException:
        os.unlink(path)
        raise
    return path


async def _drain(request: Request, budget: int) -> None:
    """Read and drop up to `budget` more bytes of the body before refusing it: a server that
    answers and closes while the client is still sending resets the connection, and the client
    (urllib, a browser) then reports a broken pipe instead of the 413's message. Bodies beyond
    `DRAIN_FACTOR` times the limit are not read (their senders may see the reset)."""
    async for chunk in request.stream():
        budget -= len(chunk)
        if budget <= 0:
            return


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):g} MB"
