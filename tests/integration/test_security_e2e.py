"""Auth and mutual TLS on the real stack: Ray Serve, the router replica, vLLM.

A separate Serve app beside the session's demo (its own name and port), deleted
when the module ends: kv-small, one replica, bearer tokens written here, a test
PKI from tests/certs.py. No prompt text may reach the router's or the replica's
logs, nor their spans (record_content is off by default).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
import ray
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from certs import make_pki
from shardline.client import Client, call_metadata, make_request, trace_id
from shardline.serve import lifecycle
from shardline.spec import validate_spec
from shardline.telemetry import attributes as attr
from shardline.telemetry.store import read_spans
from shardline.v1 import inference_pb2_grpc as pb_grpc
from waiting import Not, eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = "shardline-secure-it"
TOKENS = {"team-a": "a" * 32, "team-b": "b" * 32}
SECRET = f"zebra{uuid.uuid4().hex[:12]}"  # prompt text that must appear in no log and no span
PROMPT = f"the code of {SECRET} is"
DEPLOY_TIMEOUT_S = 300
SPAN_WAIT_S = 20


class Secured:
    def __init__(self, target: str, pki: dict[str, Path], trace_dir: Path):
        self.target, self.pki, self.trace_dir = target, pki, trace_dir

    def mutual(self, pki: dict[str, Path] | None = None) -> grpc.ChannelCredentials:
        """Trusts this deployment's CA; presents the client certificate of `pki`."""
        pki = pki or self.pki
        return grpc.ssl_channel_credentials(
            self.pki["ca"].read_bytes(), pki["client_key"].read_bytes(), pki["client"].read_bytes()
        )

    def client(self, token: str | None = None, credentials=None) -> Client:
        return Client(self.target, token=token, credentials=credentials or self.mutual())


@pytest.fixture(scope="module")
def secured(ray_cluster, tmp_path_factory) -> Secured:
    work = tmp_path_factory.mktemp("secure")
    (work / "tokens.env").write_text("".join(f"{t}={v}\n" for t, v in TOKENS.items()))
    pki = make_pki(work)
    spec = validate_spec(
        {
            "name": APP,
            "models": [
                {
                    "name": "kv-small",
                    "path": str(ROOT / "models" / "trained" / "kv-small"),
                    "dtype": "float32",
                    "max_model_len": 256,
                    "resources": {"cpu": 0.5},
                    "engine_args": {"enforce_eager": True, "gpu_memory_utilization": 0.3},
                }
            ],
            "router": {
                "port": 0,
                "cpu": 0.5,
                "auth": {"tokens_file": str(work / "tokens.env")},
                "tls": {
                    "cert_file": str(pki["server"]),
                    "key_file": str(pki["server_key"]),
                    "client_ca_file": str(pki["ca"]),
                },
            },
            "telemetry": {"trace_dir": str(work / "traces"), "metrics": False},
        }
    )
    try:
        endpoint = lifecycle.deploy(spec, DEPLOY_TIMEOUT_S)
        yield Secured(f"localhost:{endpoint.port}", pki, work / "traces")
    finally:
        lifecycle.undeploy(APP)


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_a_call_without_a_token_is_unauthenticated(secured):
    with secured.client() as client:
        assert code_of(lambda: client.generate("kv-small", PROMPT, max_tokens=2)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: client.list_models()) == grpc.StatusCode.UNAUTHENTICATED
    with secured.client(token="c" * 32) as client:
        assert code_of(lambda: client.generate("kv-small", PROMPT, max_tokens=2)) == grpc.StatusCode.UNAUTHENTICATED


def test_a_good_token_over_mutual_tls_streams_a_real_generation(secured):
    with secured.client(token=TOKENS["team-a"]) as client:
        chunks = list(client.stream("kv-small", PROMPT, max_tokens=8, temperature=0.0, ignore_eos=True))
    assert len(chunks) >= 2 and chunks[-1].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 8 and "".join(c.text for c in chunks)


def test_a_token_of_one_tenant_cannot_claim_another(secured):
    with secured.client(token=TOKENS["team-a"]) as client:
        with pytest.raises(grpc.RpcError) as info:
            client.generate("kv-small", PROMPT, max_tokens=2, tenant="team-b")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == "request names tenant 'team-b' but its token belongs to 'team-a'"


def test_handshake_fails_without_a_client_certificate_or_with_another_ca(secured, tmp_path):
    other = make_pki(tmp_path)
    no_cert = grpc.ssl_channel_credentials(secured.pki["ca"].read_bytes())
    foreign_cert = secured.mutual(other)
    foreign_server_trust = grpc.ssl_channel_credentials(
        other["ca"].read_bytes(), secured.pki["client_key"].read_bytes(), secured.pki["client"].read_bytes()
    )
    for credentials in (no_cert, foreign_cert, foreign_server_trust):
        with secured.client(token=TOKENS["team-a"], credentials=credentials) as client:
            assert code_of(lambda: client.health(timeout=5)) == grpc.StatusCode.UNAVAILABLE
    with Client(secured.target) as plaintext:
        assert code_of(lambda: plaintext.health(timeout=5)) == grpc.StatusCode.UNAVAILABLE


def test_health_needs_a_certificate_but_no_token_and_reflection_needs_a_token(secured):
    with secured.client() as client:
        assert client.health() == "SERVING" and client.health("shardline.v1.Inference/kv-small") == "SERVING"
    with grpc.secure_channel(secured.target, secured.mutual()) as channel:
        with pytest.raises(grpc.RpcError) as info:
            ProtoReflectionDescriptorDatabase(channel).get_services()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_no_prompt_text_in_router_or_replica_logs_or_spans(secured):
    with grpc.secure_channel(secured.target, secured.mutual()) as channel:
        reply, call = pb_grpc.InferenceStub(channel).Generate.with_call(
            make_request("kv-small", PROMPT, max_tokens=4, ignore_eos=True),
            metadata=call_metadata(TOKENS["team-b"]),
            timeout=60,
        )
    assert reply.usage.completion_tokens == 4
    spans = wait_for_spans(secured.trace_dir, trace_id(call))
    assert SECRET not in spans
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    assert any(APP in p.name for p in (logs / "serve").iterdir())  # the router's and replica's own logs are here
    leaked = [p for p in logs.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaked


def wait_for_spans(directory: Path, trace: str) -> str:
    """The text of every span file, once the router's and the replica's spans of
    `trace` are in (they are exported in batches)."""

    def both_roles():
        roles = {s["resource"].get(attr.PROCESS_ROLE) for s in read_spans(str(directory)) if s["trace_id"] == trace}
        return {"router", "replica"} <= roles or Not(f"spans of {sorted(roles, key=str)} only")

    eventually(both_roles, timeout_s=SPAN_WAIT_S, interval_s=0.5, message=f"trace {trace} in {directory}")
    return "".join(p.read_text() for p in directory.glob("spans-*.jsonl*"))
