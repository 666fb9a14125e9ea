"""`--set KEY=VALUE` on `tuneoff run` and `tuneoff demo`: change fields of an experiment for one run
without editing its file, as Hydra's and OmegaConf's dotted overrides do.

KEY is a dotted path through the file's mappings; in a list, a part is an index or the `name` of an
element (`arms.lora.finetune.dtype`). VALUE is read as YAML (`dtype=fp32`, `task.n_test=100`,
`adaptive={chunk: 32}`, `adaptive=null` to drop a block). The result is validated like the file itself,
and the experiment stored is the overridden one, so runs, reports and sweeps see what actually ran.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Sequence

from ..errors import TuneoffError

_KEY = re.compile(r"[A-Za-z_][\w+-]*(\.[\w+-]+)*$")


def parse_override(text: str) -> tuple[str, Any]:
    """("a.b.c", value) of one `KEY=VALUE`."""
    import yaml

    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not _KEY.match(key):
        raise TuneoffError(f"expected KEY=VALUE with a dotted KEY, got {text!r}", field="--set",
                           hint="e.g. --set dtype=fp32, --set task.n_test=100, --set 'adaptive={chunk: 32}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise TuneoffError(f"the value of {key} is not valid YAML: {getattr(exc, 'problem', exc)}",
                           field=f"--set {key}") from None
    return key, value


def apply_overrides(data: dict, overrides: Sequence[str]) -> tuple[dict, dict[str, str]]:
    """A copy of `data` with every override applied in order, and {canonical dotted field: the override
    as given} (arms named by their list index, the form validation errors use)."""
    data = copy.deepcopy(data)
    applied: dict[str, str] = {}
    for text in overrides:
        key, value = parse_override(text)
        node: Any = data
        parts, canonical = key.split("."), ""
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                index = _list_index(node, part, key)
                canonical += f"[{index}]"
                if last:
                    node[index] = value
                else:
                    node = node[index]
                continue
            if not isinstance(node, dict):
                raise TuneoffError(f"{'.'.join(parts[:i]) or 'the file'} is not a mapping: it has no field {part!r}",
                                   field=f"--set {key}")
            canonical += ("." if canonical else "") + part
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        applied[canonical] = text
    return data, applied


def _list_index(items: list, part: str, key: str) -> int:
    if part.isdigit():
        if int(part) < len(items):
            return int(part)
        raise TuneoffError(f"index {part} is past the end of a list of {len(items)}", field=f"--set {key}")
    named = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("name") == part]
    if named:
        return named[0]
    names = [str(item.get("name")) for item in items if isinstance(item, dict) and "name" in item]
    raise TuneoffError(f"no element named {part!r} in that list", field=f"--set {key}",
                       hint=f"names: {', '.join(names)}" if names else "use an index")


def overridden_by(field: str, applied: dict[str, str]) -> str | None:
    """The override that set `field` or a block above it (validation errors then name it, not a line)."""
    for canonical, text in applied.items():
        if field == canonical or field.startswith(canonical + ".") or field.startswith(canonical + "["):
            return text
    return None
