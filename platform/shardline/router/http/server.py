"""The OpenAI-compatible HTTP door: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.

An aiohttp server on the router's own event loop, beside the grpc.aio server, so
both doors share one `Pipeline` (in-flight limit, admission, policies, budgets),
one `Guard` (tokens and rate-limit buckets) and one error tree: a typed error
becomes the HTTP status and OpenAI `error` object of `openai_api.HTTP_ERRORS`.

Streaming is server-sent events. The first delta is awaited before the response
starts, so admission errors still get their real status; an error after that is
sent as a final `data: {"error": ...}` event (what the openai client raises on).
A client that disconnects cancels its handler, which closes the pipeline and
aborts the engine request, like a cancelled gRPC call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import aclosing

from aiohttp import web

from shardline import wire
from shardline.errors import InvalidArgument, NotFound
from shardline.generation import GenerationDelta
from shardline.grpc_status import retry_after_s, to_status
from shardline.router.http import chat_template, openai_api
from shardline.router.pipeline import Pipeline
from shardline.router.report import RequestReport
from shardline.security.auth import Guard, resolve_tenant
from shardline.spec.deployment import DeploymentSpec, RouterLimits, RouterTLS
from shardline.telemetry import attributes as attr
from shardline.telemetry.requests import server_span

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
DRAIN_POLL_S = 0.05
MAX_HEADERS = 100
BODY_OVERHEAD_BYTES = 65536  # JSON quoting and the other fields of the largest prompt's body


def body_limit(limits: RouterLimits) -> int:
    """Largest request body: room for a prompt of max_prompt_bytes, even JSON-escaped."""
    return limits.max_prompt_bytes * 2 + BODY_OVERHEAD_BYTES


class HttpServer:
    def __init__(self, spec: DeploymentSpec, pipeline: Pipeline, guard: Guard | None):
        self._spec = spec
        self._pipeline = pipeline
        self._guard = guard
        self._runner: web.AppRunner | None = None
        self._site: web.SockSite | None = None
        self._active = 0

    async def start(self) -> int:
        """Bind `router.host:router.http_port` and serve; returns the bound port."""
        cfg = self._spec.router
        app = web.Application(middlewares=[self._door], client_max_size=body_limit(cfg.limits))
        app.add_routes(
            [
                web.get("/v1/models", self._models),
                web.get("/v1/models/{model}", self._model),
                web.post("/v1/completions", self._completions),
                web.post("/v1/chat/completions", self._chat),
            ]
        )
        # Handlers are cancelled when their client goes away: that aborts the engine request.
        # Header limits: a field or the request line over max_metadata_bytes, or more
        # than MAX_HEADERS fields, is answered 400 by aiohttp's parser.
        header_limits = {
            "max_line_size": cfg.limits.max_metadata_bytes,
            "max_field_size": cfg.limits.max_metadata_bytes,
            "max_headers": MAX_HEADERS,
        }
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0, **header_limits
        )
        await self._runner.setup()
        sock = socket.create_server((cfg.host, cfg.http_port), reuse_port=True)
        self._site = web.SockSite(self._runner, sock, ssl_context=_ssl_context(cfg.tls) if cfg.tls else None)
        await self._site.start()
        port = sock.getsockname()[1]
        logger.info("router HTTP (OpenAI-compatible) listening on %s:%d", cfg.host, port)
        return port

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, give in-flight requests `grace_s` to finish, then cancel the rest."""
        if self._site is None:
            return
        site, self._site = self._site, None
        await site.stop()
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._active and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        await self._runner.cleanup()

    @web.middleware
    async def _door(self, request: web.Request, handler) -> web.StreamResponse:
        """Every route: the bearer token (when auth is on), then errors as OpenAI objects."""
        self._active += 1
        try:
            if self._guard is not None:
                await self._guard.admit([(wire.AUTHORIZATION, request.headers.get(wire.AUTHORIZATION, ""))])
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            limit = body_limit(self._spec.router.limits)
            message = (
                f"{request.method} {request.path}: the request body is over {limit} bytes "
                "(twice router.limits.max_prompt_bytes, plus 64 KiB)"
            )
            return _error(InvalidArgument(message), 413)
        except web.HTTPException as exc:  # unknown route or method
            error = NotFound if exc.status == 404 else InvalidArgument
            return _error(error(f"{request.method} {request.path}: {exc.reason}"), exc.status)
        except Exception as exc:  # typed errors keep their status; anything else is a 500
            return _error(exc)
        finally:
            self._active -= 1

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [_model_object(n) for n in _names(self._spec)]})

    async def _model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in _names(self._spec):
            raise NotFound(f"model {name!r} is not served; served models: {', '.join(_names(self._spec))}")
        return web.json_response(_model_object(name))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = openai_api.parse(openai_api.CompletionRequest, await _json(request))
        return await self._generate(request, body, body.prompt, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = openai_api.parse(openai_api.ChatRequest, await _json(request))
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        # Loading a tokenizer and rendering are CPU work: keep the loop serving others.
        prompt = await asyncio.to_thread(chat_template.render, self._spec, body.model, messages)
        return await self._generate(request, body, prompt, chat=True)

    async def _generate(self, request: web.Request, body, prompt: str, chat: bool) -> web.StreamResponse:
        proto = openai_api.generate_request(body, prompt, _text_header(request, REQUEST_ID_HEADER))
        proto.tenant = resolve_tenant("", _text_header(request, wire.TENANT))
        report = RequestReport()
        shape = openai_api.Shape(chat, body.model, report)
        async with self._traced(request) as rpc:
            session = _text_header(request, wire.SESSION)
            stream = self._pipeline.run(proto, self._spec.router.limits.default_deadline_s, report, rpc, session)
            async with aclosing(stream):
                trace_header = {wire.TRACE_ID: rpc.trace_id} if rpc.trace_id else {}
                if body.stream:
                    usage = body.stream_options is not None and body.stream_options.include_usage
                    return await _sse(request, stream, shape, usage, trace_header)
                text, last = [], None
                async for delta in stream:
                    text.append(delta.text)
                    last = delta
                return web.json_response(shape.whole("".join(text), last), headers=trace_header)

    def _traced(self, request: web.Request):
        """The request's server span, like a gRPC call's (continues a `traceparent`
        header; the trace id comes back in the `shardline-trace-id` header)."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        route = request.path
        attributes = {attr.HTTP_REQUEST_METHOD: request.method, attr.HTTP_ROUTE: route}
        return server_span(f"{request.method} {route}", route, headers, attributes, self._spec.telemetry.record_content)


async def _sse(
    request: web.Request,
    stream: AsyncIterator[GenerationDelta],
    shape: openai_api.Shape,
    include_usage: bool,
    headers: dict[str, str],
) -> web.StreamResponse:
    delta = await anext(stream, None)  # admission errors raise here, before any byte is sent
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers}
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    first, last = True, None
    try:
        while delta is not None:
            await _event(response, shape.chunk(delta, first))
            first, last = False, delta
            delta = await anext(stream, None)
        if include_usage:
            await _event(response, shape.usage_chunk(last))
    except ConnectionError:  # the client left: nothing to tell it
        raise
    except Exception as exc:  # headers are sent: the error becomes the last event
        code, message = to_status(exc)
        await _event(response, openai_api.error_body(message, code.name)[1])
    await response.write(b"data: [DONE]\n\n")
    return response


async def _event(response: web.StreamResponse, payload: dict) -> None:
    await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")


def _text_header(request: web.Request, name: str) -> str:
    """A header's value; one that is not UTF-8 (aiohttp keeps its bytes as surrogates)
    is refused, since it could not become a proto string."""
    value = request.headers.get(name, "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"header {name} is not UTF-8 text") from None
    return value


async def _json(request: web.Request):
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None


def _error(exc: Exception, status: int | None = None) -> web.Response:
    code, message = to_status(exc)
    http_status, body = openai_api.error_body(message, code.name, getattr(exc, "param", None))
    after = retry_after_s(exc)
    headers = {"Retry-After": str(max(1, math.ceil(after)))} if after is not None else None  # whole seconds
    return web.json_response(body, status=status or http_status, headers=headers)


def _names(spec: DeploymentSpec) -> list[str]:
    return [m.name for m in spec.models] + [c.name for c in spec.policies.cascades]


def _model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "shardline"}


def _ssl_context(tls: RouterTLS) -> ssl.SSLContext:
    """The gRPC port's certificate for HTTPS too; client certificates required when a CA is set."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
