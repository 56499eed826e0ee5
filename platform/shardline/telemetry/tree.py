"""Renders one trace as an indented tree: span, duration, and the process it ran in."""

from __future__ import annotations

from shardline.telemetry import attributes as attr


def render_trace(spans: list[dict]) -> list[str]:
    """Lines of the tree; spans whose parent is not in the trace are roots."""
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[dict]] = {}
    for s in spans:
        parent = s["parent_id"] if s["parent_id"] in ids else ""
        children.setdefault(parent, []).append(s)
    for siblings in children.values():
        siblings.sort(key=lambda s: s["start_ns"])
    processes = {process_label(s) for s in spans}
    nodes = {node_label(s) for s in spans}
    lines = [f"trace {spans[0]['trace_id']}: {len(spans)} spans, {len(processes)} processes, {len(nodes)} nodes"]
    for root in children.get("", []):
        _walk(root, children, "", "", lines)
    return lines


def _walk(span: dict, children: dict[str, list[dict]], lead: str, branch: str, lines: list[str]) -> None:
    lines.append(f"{lead}{branch}{span['name']}  {duration_ms(span):.1f} ms  [{process_label(span)}]")
    kids = children.get(span["span_id"], [])
    inner = lead + {"├─ ": "│  ", "└─ ": "   "}.get(branch, "")
    for i, kid in enumerate(kids):
        _walk(kid, children, inner, "└─ " if i == len(kids) - 1 else "├─ ", lines)


def duration_ms(span: dict) -> float:
    return (span["end_ns"] - span["start_ns"]) / 1e6


def node_label(span: dict) -> str:
    """The Ray node (short id); a process outside Ray (a client) counts as its host."""
    r = span["resource"]
    return (r.get(attr.RAY_NODE_ID) or "")[:8] or r.get(attr.HOST_NAME, "?")


def process_label(span: dict) -> str:
    r = span["resource"]
    return f"{r.get(attr.PROCESS_ROLE, '?')} pid {r.get(attr.PROCESS_PID, '?')} node {node_label(span)}"
