"""Names of the spans, span attributes and resource attributes Shardline emits.

GenAI names follow the OpenTelemetry GenAI semantic conventions, RPC names the
gRPC ones; `shardline.*` names are ours. Nothing else spells these strings.
"""

from __future__ import annotations

from shardline import wire

# Spans
SERVER_SPAN_PREFIX = f"{wire.INFERENCE_SERVICE}/"  # + method: the router's server span
ADMISSION_SPAN = "router.admission"
REPLICA_CALL_SPAN = "router.replica_call"
REPLICA_SPAN = "replica.generate"
COMPRESSION_SPAN = "router.compression"
DECODING_PLAN_SPAN = "router.decoding_plan"
CASCADE_ATTEMPT_SPAN = "router.cascade_attempt"
VLLM_REQUEST_SPAN = "llm_request"  # emitted by vLLM itself

# RPC semantic conventions
RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code"
HTTP_REQUEST_METHOD = "http.request.method"  # the OpenAI-compatible HTTP door
HTTP_ROUTE = "http.route"

# GenAI semantic conventions
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_PROMPT = "gen_ai.prompt"  # only with telemetry.record_content
GEN_AI_COMPLETION = "gen_ai.completion"  # only with telemetry.record_content

GEN_AI_SYSTEM_VALUE = "vllm"
GEN_AI_OPERATION_TEXT_COMPLETION = "text_completion"

# Ours
TIME_TO_FIRST_TOKEN_S = "shardline.time_to_first_token_s"
COMPRESSION_RATIO = "shardline.compression.ratio"
TIER = "shardline.tier"
TENANT = "shardline.tenant"
COST = "shardline.cost"
UNCERTAINTY = "shardline.uncertainty"
CASCADE_ATTEMPT = "shardline.cascade.attempt"
ROUTING_POLICY = "shardline.routing.policy"  # the model's routing.policy
ROUTING_REASON = "shardline.routing.reason"  # why that replica: prefix, session, no_match, load_guard, ...
ROUTING_REPLICA = "shardline.routing.replica"  # the replica the request router chose
ROUTING_MATCHED_BLOCKS = "shardline.routing.matched_blocks"  # leading blocks it predicted that replica holds
ROUTING_PROMPT_BLOCKS = "shardline.routing.prompt_blocks"  # whole blocks in the prompt
REPLICA_ID = "shardline.replica.id"  # the replica that answered (its own report)
CACHED_TOKENS = "shardline.replica.cached_tokens"  # prompt tokens its engine found in the prefix cache
REPLICA_ATTEMPT = "shardline.replica.attempt"  # 0, then 1, 2, ... for retries after a replica died

# Resource attributes (one set per process)
SERVICE_NAME = "service.name"
PROCESS_PID = "process.pid"
HOST_NAME = "host.name"
PROCESS_ROLE = "shardline.process.role"  # router | replica | client | ...
RAY_NODE_ID = "shardline.ray.node_id"
