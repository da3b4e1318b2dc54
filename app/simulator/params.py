"""A call's parameters as both clouds take them: a JSON body, or a GET query that the SDKs
flatten, brought back to the body's nested shape. ValueError says what is wrong; each cloud
answers it with its own error."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl


def json_object(body: bytes) -> dict[str, Any]:
    """The body's JSON object; no body is no parameters."""
    if not body:
        return {}
    try:
        params = json.loads(body)
    except ValueError as exc:
        raise ValueError("the body is not JSON") from exc
    if not isinstance(params, dict):
        raise ValueError("the body must be a JSON object")
    return params


def strings(value: Any) -> list[str]:
    """The strings in `value` when it is a list (what the stats record of a call's IDs)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def unflatten(query: str) -> dict[str, Any]:
    """`Filters.0.Name=x&Filters.0.Values.0=y` -> {"Filters": [{"Name": "x", "Values": ["y"]}]}:
    numbered levels become lists in number order (Tencent counts from 0, JD from 1).
    ValueError when two names clash or the top level is numbered."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"parameter {key!r} clashes with another")
            node = child
        node[parts[-1]] = value
    params = _listify(root)
    if not isinstance(params, dict):
        raise ValueError("parameters must have names, not numbers")
    return params


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}
