"""Authentication, per-tenant rate limits and (mutual) TLS on the real grpc.aio router.

Every method the server exposes is enumerated through reflection, so a service
added later is covered without editing this test.
"""

import asyncio
import contextlib

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from builders import make_spec
from certs import make_pki
from fakes import fake_stack
from shardline.client import AsyncClient, Client
from shardline.errors import SpecError
from shardline.security.auth import RateLimiter, load_tokens

TOKENS = {"team-a": "a" * 24, "team-b": "b" * 24}
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens.env"
    path.write_text("# tenant=token\n" + "".join(f"{t}={v}\n" for t, v in TOKENS.items()))
    return str(path)


@contextlib.asynccontextmanager
async def router(**router_fields):
    async with fake_stack(refresh=False, router={"port": 0, **router_fields}) as s:
        yield f"localhost:{s.router.port}"


def exposed_methods(target: str) -> list[tuple[str, bool, bool]]:
    """(path, client_streaming, server_streaming) for every method reflection lists."""
    with grpc.insecure_channel(target) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        return [
            (f"/{name}/{m.name}", m.client_streaming, m.server_streaming)
            for name in services
            for m in pool.FindServiceByName(name).methods
        ]


async def status_without_token(channel: grpc.aio.Channel, path: str, client_streaming: bool, server_streaming: bool):
    kind = ("stream" if client_streaming else "unary") + "_" + ("stream" if server_streaming else "unary")
    call_factory = getattr(channel, kind)(path)
    call = call_factory(iter([b""]) if client_streaming else b"", timeout=5)
    try:
        if server_streaming:
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_every_exposed_method_refuses_a_call_without_a_token(tokens_file):
    async with router(auth={"tokens_file": tokens_file, "exempt": ["reflection"]}) as target:
        methods = [
            m for m in await asyncio.to_thread(exposed_methods, target) if not m[0].startswith(f"/{REFLECTION}/")
        ]
        assert {"/shardline.v1.Inference/Generate", "/grpc.health.v1.Health/Watch"} <= {m[0] for m in methods}
        async with grpc.aio.insecure_channel(target) as channel:
            codes = {m[0]: await status_without_token(channel, *m) for m in methods}
    assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, codes


async def test_health_is_open_by_default_and_reflection_is_not(tokens_file):
    async with router(auth={"tokens_file": tokens_file}) as target:
        async with grpc.aio.insecure_channel(target) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            path = f"/{REFLECTION}/ServerReflectionInfo"
            assert await status_without_token(channel, path, True, True) == grpc.StatusCode.UNAUTHENTICATED


async def test_a_known_token_is_served_and_an_unknown_one_is_not(tokens_file):
    async with router(auth={"tokens_file": tokens_file}) as target:
        async with AsyncClient(target, token=TOKENS["team-a"]) as client:
            assert (await client.generate("tiny-llama", "hi", max_tokens=3)).usage.completion_tokens == 3
        async with AsyncClient(target, token="x" * 24) as client:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.generate("tiny-llama", "hi", max_tokens=3)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <token>" in info.value.details()


async def test_rate_limit_is_per_tenant(tokens_file):
    async with router(auth={"tokens_file": tokens_file, "requests_per_s": 0.01, "burst": 2}) as target:
        async with AsyncClient(target, token=TOKENS["team-a"]) as a, AsyncClient(target, token=TOKENS["team-b"]) as b:
            for _ in range(2):
                await a.generate("tiny-llama", "hi", max_tokens=1)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await a.generate("tiny-llama", "hi", max_tokens=1)
            await b.generate("tiny-llama", "hi", max_tokens=1)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tenant 'team-a' is over its rate limit of 0.01 requests/s (burst 2); retry in" in info.value.details()


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=1, clock=lambda: now[0])
    assert limiter.retry_after("t") == 0
    assert limiter.retry_after("t") == pytest.approx(0.5)
    now[0] = 0.5
    assert limiter.retry_after("t") == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("team-a\n", "tokens.env:1: expected `tenant=token`"),
        ("team-a=short\n", "tokens.env:1: token for 'team-a' has 5 characters; the minimum is 16"),
        (f"a={'x' * 16}\na={'y' * 16}\n", "tokens.env:2: tenant 'a' appears twice"),
        ("# nothing\n", "holds no `tenant=token` line"),
    ],
)
def test_bad_tokens_file_names_the_line_and_never_the_token(tmp_path, text, message):
    path = tmp_path / "tokens.env"
    path.write_text(text)
    with pytest.raises(SpecError, match=".*") as info:
        load_tokens(str(path))
    assert message in str(info.value)
    assert "short" not in str(info.value) and "x" * 16 not in str(info.value)


async def test_tls_router_refuses_plaintext_and_serves_tls(tmp_path):
    pki = make_pki(tmp_path)
    tls = {"cert_file": str(pki["server"]), "key_file": str(pki["server_key"])}
    async with router(tls=tls) as target:
        assert await health_code(target, None) == grpc.StatusCode.UNAVAILABLE
        creds = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        assert await health_code(target, creds) == grpc.StatusCode.OK


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path):
    pki = make_pki(tmp_path)
    tls = {"cert_file": str(pki["server"]), "key_file": str(pki["server_key"]), "client_ca_file": str(pki["ca"])}
    async with router(tls=tls) as target:
        anonymous = grpc.ssl_channel_credentials(pki["ca"].read_bytes())
        assert await health_code(target, anonymous) == grpc.StatusCode.UNAVAILABLE
        mutual = grpc.ssl_channel_credentials(
            pki["ca"].read_bytes(), pki["client_key"].read_bytes(), pki["client"].read_bytes()
        )
        assert await health_code(target, mutual) == grpc.StatusCode.OK
        async with AsyncClient(target, credentials=mutual) as client:
            assert (await client.generate("tiny-llama", "hi", max_tokens=2)).usage.completion_tokens == 2


async def health_code(target: str, credentials) -> grpc.StatusCode:
    """The status of a health check through the sync `Client` (run in a thread:
    the router under test serves on this event loop)."""

    def check():
        with Client(target, credentials=credentials) as client:
            try:
                client.health(timeout=3)
            except grpc.RpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    return await asyncio.to_thread(check)


def test_tls_file_that_is_not_pem_is_a_spec_error(tmp_path):
    from shardline.security.tls import server_credentials

    (tmp_path / "c").write_text("hello")
    tls = make_spec(
        router={"port": 0, "tls": {"cert_file": str(tmp_path / "c"), "key_file": str(tmp_path / "c")}}
    ).router.tls
    with pytest.raises(SpecError, match=r"router.tls.key_file .* is not PEM"):
        server_credentials(tls)


async def test_cli_generate_reaches_a_mutual_tls_router_with_a_token(tmp_path, tokens_file, capsys):
    from shardline.cli.main import main

    pki = make_pki(tmp_path)
    tls = {"cert_file": str(pki["server"]), "key_file": str(pki["server_key"]), "client_ca_file": str(pki["ca"])}
    async with router(tls=tls, auth={"tokens_file": tokens_file}) as target:
        argv = [
            "generate",
            "hi",
            "--model",
            "tiny-llama",
            "--max-tokens",
            "3",
            "--target",
            target,
            "--ca",
            str(pki["ca"]),
            "--cert",
            str(pki["client"]),
            "--key",
            str(pki["client_key"]),
        ]
        assert await asyncio.to_thread(main, [*argv, "--token", TOKENS["team-b"]]) == 0
        assert "completion 3 tokens" in capsys.readouterr().err
        assert await asyncio.to_thread(main, argv + ["--token", ""]) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
