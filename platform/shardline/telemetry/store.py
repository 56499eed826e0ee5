"""The local span store behind `exporter: file`, and its reader.

Each process appends its finished spans as JSON lines to its own file in the
trace directory (no locking between processes: a file has one writer). A file
past `MAX_FILE_BYTES` is rotated once, and files untouched for `RETENTION_S` are
removed when a process opens the store, so the store stays bounded. The store only
sees the spans of processes on this machine: across nodes, export to a collector.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id

from shardline.errors import ShardlineError
from shardline.telemetry import attributes as attr

MAX_FILE_BYTES = 32 * 1024 * 1024
RETENTION_S = 7 * 24 * 3600
RESOURCE_KEYS = (attr.PROCESS_ROLE, attr.PROCESS_PID, attr.HOST_NAME, attr.RAY_NODE_ID)


class TraceNotFound(ShardlineError):
    """No span of the asked-for trace is in the store."""


class FileSpanExporter(SpanExporter):
    def __init__(self, directory: str):
        self._path = Path(directory) / f"spans-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(self._path.parent, time.time() - RETENTION_S)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(s), separators=(",", ":")) + "\n" for s in spans)
        if self._path.exists() and self._path.stat().st_size > MAX_FILE_BYTES:
            self._path.replace(self._path.with_suffix(".jsonl.1"))
        with self._path.open("a") as f:
            f.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _remove_stale(directory: Path, before: float) -> None:
    for path in directory.glob("spans-*.jsonl*"):
        with contextlib.suppress(FileNotFoundError):  # another process removed it first
            if path.stat().st_mtime < before:
                path.unlink()


def span_record(span: ReadableSpan) -> dict:
    parent = span.parent
    resource = span.resource.attributes
    return {
        "trace_id": format_trace_id(span.context.trace_id),
        "span_id": format_span_id(span.context.span_id),
        "parent_id": format_span_id(parent.span_id) if parent else "",
        "name": span.name,
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "resource": {k: resource[k] for k in RESOURCE_KEYS if k in resource},
    }


def read_spans(directory: str) -> list[dict]:
    """Every span in the store (rotated files included), oldest file first."""
    files = sorted(Path(directory).glob("spans-*.jsonl*"), key=lambda p: p.stat().st_mtime)
    return [json.loads(line) for path in files for line in _lines(path)]


def _lines(path: Path) -> Iterable[str]:
    with path.open() as f:
        # A line cut short by a writer that is still appending is skipped.
        return [line for line in f if line.endswith("\n")]


def trace_spans(spans: list[dict], trace_id: str) -> list[dict]:
    found = [s for s in spans if s["trace_id"] == trace_id.lower()]
    if not found:
        raise TraceNotFound(f"no spans of trace {trace_id} in the store")
    return found


def last_request_trace(spans: list[dict]) -> str:
    """The trace of the newest request the router served (health checks excluded)."""
    served = [s for s in spans if s["name"].startswith(attr.SERVER_SPAN_PREFIX)]
    if not served:
        raise TraceNotFound("no request traces in the store yet")
    return max(served, key=lambda s: s["end_ns"])["trace_id"]
