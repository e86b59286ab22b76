"""``edgekit serve-tail``: the server half of a split model behind FastAPI + uvicorn.

Endpoints (all but /v1/health need ``Authorization: Bearer <token>``):

- ``POST /v1/tail``  body = uint8 bottleneck bytes, header ``X-Shape: N,C,H,W`` (C,H,W must be the
  bundle's bottleneck shape). The server dequantizes with the bundle's scale/zero point and runs
  the tail. Reply: float32 logits (little-endian), ``X-Shape`` and ``X-Server-Ms`` headers.
- ``POST /v1/full``  the full-offload baseline: ``X-Format: raw`` (uint8 N,C,H,W image bytes, with
  ``X-Shape``) or ``jpeg`` (one JPEG image). The server preprocesses and runs the whole model.
- ``GET /v1/health`` bottleneck shape and quantization (no secret in it).

Requests are bounded before they are read (Content-Length and a streaming cap), shapes before they are
multiplied, and in time (``split.guard``: a deadline per request, a cap on connections without the token);
every bad request gets a 4xx with a one-line reason, and the process keeps serving.
"""


import asyncio
import hmac
import io
import math
import time
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError, MissingDependency
from edgekit.split.bundle import SplitBundle, load_split_bundle
from edgekit.split.deploy import dequantize
from edgekit.split.guard import DEFAULT_MAX_UNTRUSTED, DEFAULT_READ_TIMEOUT, ConnectionGuard, guarded_protocol, peer_of

DEFAULT_MAX_BATCH = 64
# uvicorn answers 503 to every new request while this many connections are open, idle ones included: it is what
# 70 half-open connections used to fill. The guard keeps connections without the token to --max-untrusted, so
# only clients with the token, requests in progress, or a flood of new connections come near it.
MAX_CONNECTIONS = 512


def _fastapi():
    try:
        import fastapi
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise MissingDependency(err.name or "fastapi", "split", "edgekit serve-tail") from None
    return fastapi


class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason


def _parse_shape(text: str | None, max_batch: int, limit: int) -> tuple[int, ...]:
    """N,C,H,W from the header, each value bounded before any product is taken (a product of client numbers in
    int64 wraps around: 1,2^32,2^32,1 needed "0 bytes")."""
    shown = (text or "")[:64]
    try:
        shape = tuple(int(v) for v in (text or "").split(","))
    except ValueError:
        raise BadRequest(400, f"X-Shape {shown!r} is not N,C,H,W") from None
    if len(shape) != 4 or min(shape) <= 0:
        raise BadRequest(400, f"X-Shape {shown!r} is not N,C,H,W")
    if shape[0] > max_batch:
        raise BadRequest(413, f"batch {shape[0]} exceeds the server's limit {max_batch}")
    if max(shape) > limit or math.prod(shape) > limit:
        raise BadRequest(400, f"X-Shape {shown!r} is larger than any request this server takes ({limit} bytes)")
    return shape


def create_app(bundle: SplitBundle, token: str, threads: int = 1, max_batch: int = DEFAULT_MAX_BATCH,
               max_request_bytes: int | None = None, read_timeout: float = DEFAULT_READ_TIMEOUT,
               guard: ConnectionGuard | None = None):
    """The ASGI app; sessions are loaded once, here. ``guard`` learns which connections showed the token."""
    fastapi = _fastapi()
    from fastapi import Request, Response
    from fastapi.responses import JSONResponse

    tail = bundle.session(bundle.tail_artifact(), threads)
    full = bundle.session(bundle.full_artifact(), threads)
    spec = bundle.spec
    bshape = bundle.bottleneck_shape
    image_bytes = int(np.prod(spec.input_shape))
    limit = max_request_bytes or max(max_batch * max(int(np.prod(bshape)), image_bytes), 1 << 20)
    secret = token.encode()
    app = fastapi.FastAPI(title="edgekit split tail", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(BadRequest)
    async def _bad(request: Request, exc: BadRequest):
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    async def _body(request: Request) -> bytes:
        """Auth first (cheap), then the body, refusing anything over ``limit`` before reading it and anything
        that takes longer than ``read_timeout`` to arrive."""
        header = request.headers.get("authorization", "")
        given = header[7:].encode(errors="replace") if header.lower().startswith("bearer ") else b""
        if not hmac.compare_digest(given, secret):
            raise BadRequest(401, "missing or wrong token")
        if guard is not None:
            guard.trust(peer_of(request.scope.get("client")))
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise BadRequest(413, f"request body over the limit of {limit} bytes")

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BadRequest(413, f"request body over the limit of {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        try:
            return await asyncio.wait_for(read(), read_timeout)
        except asyncio.TimeoutError:
            raise BadRequest(408, f"request body not received within {read_timeout:g} s") from None

    def _reply(logits: np.ndarray, started: float) -> Response:
        logits = np.ascontiguousarray(logits, dtype="<f4")
        return Response(logits.tobytes(), media_type="application/octet-stream",
                        headers={"X-Shape": ",".join(map(str, logits.shape)),
                                 "X-Server-Ms": f"{(time.perf_counter() - started) * 1e3:.4f}"})

    @app.get("/v1/health")
    async def health():
        return {"status": "ok", "bottleneck_shape": list(bshape),
                "quantization": bundle.quantization, "max_request_bytes": limit}

    @app.post("/v1/tail")
    async def run_tail(request: Request):
        body = await _body(request)
        started = time.perf_counter()
        shape = _parse_shape(request.headers.get("x-shape"), max_batch, limit)
        if tuple(shape[1:]) != tuple(bshape):
            raise BadRequest(400, f"bottleneck shape {shape[1:]} is not the bundle's {tuple(bshape)}")
        if len(body) != math.prod(shape):
            raise BadRequest(400, f"body has {len(body)} bytes, X-Shape {shape} needs {math.prod(shape)}")
        q = np.frombuffer(body, dtype=np.uint8).reshape(shape)
        return _reply(tail.run(dequantize(q, bundle.scale, bundle.zero_point)), started)

    @app.post("/v1/full")
    async def run_full(request: Request):
        import torch

        body = await _body(request)
        started = time.perf_counter()
        fmt = request.headers.get("x-format", "raw").lower()
        if fmt == "raw":
            shape = _parse_shape(request.headers.get("x-shape"), max_batch, limit)
            if len(body) != math.prod(shape):
                raise BadRequest(400, f"body has {len(body)} bytes, X-Shape {shape} needs {math.prod(shape)}")
            images = torch.from_numpy(np.frombuffer(body, dtype=np.uint8).reshape(shape).copy())
        elif fmt == "jpeg":
            images = _decode_jpeg(body)
        else:
            raise BadRequest(400, f"X-Format {fmt!r} is not raw or jpeg")
        try:
            x = spec.prepare(images).numpy()
        except ValueError as err:
            raise BadRequest(400, f"image does not fit the model: {err}") from None
        return _reply(full.run(x), started)

    return app


def _decode_jpeg(body: bytes):
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as img:
            if img.width * img.height > 4096 * 4096:
                raise BadRequest(413, "image too large")
            array = np.asarray(img.convert("L" if img.mode in ("L", "1", "P") else "RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise BadRequest(400, "body is not a readable JPEG image") from None
    array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    return torch.from_numpy(np.ascontiguousarray(array))[None]


def serve(bundle_dir: Path, host: str, port: int, token: str, threads: int = 1, max_batch: int = DEFAULT_MAX_BATCH,
          max_request_bytes: int | None = None, read_timeout: float = DEFAULT_READ_TIMEOUT,
          max_untrusted: int = DEFAULT_MAX_UNTRUSTED) -> None:
    """Run uvicorn in the foreground until interrupted."""
    _fastapi()
    import uvicorn

    if port <= 0 or port > 65535:
        raise EdgekitError(f"--port {port} is not a TCP port")
    if not read_timeout > 0 or max_untrusted < 1:
        raise EdgekitError(f"--read-timeout {read_timeout:g} and --max-untrusted {max_untrusted} must be positive")
    guard = ConnectionGuard(read_timeout, max_untrusted)
    app = create_app(load_split_bundle(bundle_dir), token, threads, max_batch, max_request_bytes, read_timeout, guard)
    config = uvicorn.Config(guard.wrap(app), host=host, port=port, log_level="warning", access_log=False,
                            http=guarded_protocol(guard), limit_concurrency=MAX_CONNECTIONS + max_untrusted,
                            timeout_keep_alive=max(1, int(read_timeout)), h11_max_incomplete_event_size=16 * 1024)
    server = uvicorn.Server(config)
    print(f"serving split tail of {bundle_dir} on http://{host}:{port}", flush=True)
    server.run()
