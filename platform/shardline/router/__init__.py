"""The router: one request pipeline behind two front doors.

- `server.py`: `RouterServer` owns the pipeline, hands it to both doors, keeps
  replica readiness current and drains.
- `pipeline.py`: the stages of one request (validation.py, capacity.py,
  compression, decoding plan with metering.py, replica_call.py for retry/resume).
- `grpc/`: the gRPC door (server, servicer, interceptors, transport limits).
- `http/`: the OpenAI-compatible HTTP door (server, OpenAI mapping, chat templates).
"""
