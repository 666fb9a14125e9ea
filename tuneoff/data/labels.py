"""Label sets and label maps given as text: on the command line, or as a file beside the data.

    parse_label_map("0=negative,1=positive")    # {"0": "negative", "1": "positive"}
    parse_labels("examples/data/banking77/categories.json")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import TuneoffError


def parse_label_map(text: str | None) -> dict[str, str] | None:
    """`0=negative,1=positive`, inline JSON `{"0": "negative"}`, or a path to a JSON object file."""
    if not text:
        return None
    if text.lstrip().startswith("{") or Path(text).is_file():
        raw = _json_arg(text, "label_map")
        if not isinstance(raw, dict) or not raw:
            raise TuneoffError("a label map must be a non-empty JSON object", field="label_map",
                               hint='e.g. {"0": "negative", "1": "positive"}')
        return {str(k): str(v) for k, v in raw.items()}
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    if not pairs or not all("=" in p for p in pairs):
        raise TuneoffError(f"cannot read label map '{text}'", field="label_map",
                           hint="write it as 0=negative,1=positive, or give a JSON file")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def parse_labels(text: str | None) -> list[str] | None:
    """`a,b,c`, or a path to a JSON list or a text file with one label per line."""
    if not text:
        return None
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix == ".json":
            raw = _json_arg(text, "labels")
            if not isinstance(raw, list):
                raise TuneoffError("a label file must hold a JSON list", file=text, field="labels")
            labels = [str(x) for x in raw]
        else:
            labels = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    else:
        labels = [x.strip() for x in text.split(",") if x.strip()]
    if not labels:
        raise TuneoffError("the label set is empty", field="labels", hint="give labels as a,b,c or a file")
    return labels


def _json_arg(text: str, field: str) -> Any:
    path = Path(text).expanduser()
    source = path.read_text(encoding="utf-8") if path.is_file() else text
    try:
        return json.loads(source)
    except json.JSONDecodeError as e:
        raise TuneoffError(f"not valid JSON: {e.msg}", file=str(path) if path.is_file() else None,
                           line=e.lineno, field=field) from None
