"""Building spec dataclasses from plain dicts (YAML), with errors that name the field.

Every spec (`TaskSpec`, `PromptArm`, `FinetuneArm`, ...) is a dataclass; its cross-field checks
live in its own `__post_init__`. This module only does the generic part: unknown keys get
"did you mean", wrong scalar types are named, nested spec dataclasses are built recursively.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import TuneoffError, did_you_mean

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, where: str = "", file: str | None = None) -> T:
    """`cls(**data)` with checks: `where` is the dotted path of this spec inside its file."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise TuneoffError(f"expected a mapping, got {type(data).__name__}", file=file, field=where or None)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, bool):  # YAML 1.1 reads a bare on/off/yes/no key as a boolean
            raise TuneoffError(f"the key was read as {key}", file=file, field=path,
                               hint="YAML turns a bare on/off/yes/no into true/false: quote the key")
        if key not in fields:
            raise TuneoffError(f"unknown key '{key}'", file=file, field=path, hint=did_you_mean(str(key), list(fields)))
        kwargs[key] = _convert(hints[key], value, path, file)
    try:
        return cls(**kwargs)
    except TuneoffError as exc:
        if file and not exc.file:
            exc.file = file
            exc.args = (exc.render(),)
        if where and exc.field and not exc.field.startswith(where):
            exc.field = f"{where}.{exc.field}"
            exc.args = (exc.render(),)
        raise
    except (TypeError, ValueError) as exc:
        raise TuneoffError(str(exc), file=file, field=where or None) from None


def _convert(hint: Any, value: Any, path: str, file: str | None) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, path, file)
            except TuneoffError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path, file)
    if origin in (list, tuple) or hint in (list, tuple):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise TuneoffError(f"expected a list, got {type(value).__name__}", file=file, field=path)
        inner = args[0] if args else Any
        items = [_convert(inner, v, f"{path}[{i}]", file) for i, v in enumerate(value)]
        return tuple(items) if (origin or hint) is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise TuneoffError(f"expected a mapping, got {type(value).__name__}", file=file, field=path)
        return value
    if origin is typing.Literal:
        if value not in args:
            raise TuneoffError(f"'{value}' is not one of {', '.join(map(str, args))}", file=file, field=path,
                               hint=did_you_mean(str(value), [str(a) for a in args]))
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 1e300 else math.inf
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        # .nan / .inf would pass every `x > 0` check and then poison training or sampling
        raise TuneoffError(f"expected a finite number, got {value}", file=file, field=path)
    if hint is int and isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        raise TuneoffError(f"{value} is out of range (a 64-bit integer)", file=file, field=path)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise TuneoffError(f"expected {hint.__name__}, got {type(value).__name__} ({value!r})", file=file, field=path)
    return value


MAX_YAML_BYTES = 2_000_000
"""A config file past this is not a config: refuse it before the parser holds it all."""
MAX_YAML_VALUES = 100_000
"""Values a file may stand for once its aliases expand. An alias bomb (`b: [*a, *a, ...]` nested ten
deep) is a few lines that expand to billions of values, and `dataclasses.asdict` copies every one."""


def read_yaml(path: str | Path, what: str = "a mapping of fields") -> tuple[dict, Any]:
    """(data, node tree) of a YAML mapping file; the nodes keep every value's line for errors.

    Bounded: the file's size, its values after alias expansion, its nesting; a key given twice is an
    error rather than YAML's silent "last one wins".
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise TuneoffError("no such file", file=str(path))
    if path.stat().st_size > MAX_YAML_BYTES:
        raise TuneoffError(f"the file is larger than {MAX_YAML_BYTES:,} bytes: not a config file", file=str(path))
    text = _utf8(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_nodes(root, str(path))
        data = yaml.SafeLoader("").construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TuneoffError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                           line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise TuneoffError("the YAML is nested too deeply", file=str(path)) from None
    if not isinstance(data, dict):
        raise TuneoffError(f"expected {what}", file=str(path))
    return data, root


def _utf8(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # an editor's byte-order mark is harmless
    except UnicodeDecodeError as e:
        raise TuneoffError(f"not UTF-8 text: byte 0x{raw[e.start]:02x}", file=str(path),
                           line=raw.count(b"\n", 0, e.start) + 1, hint="re-save the file as UTF-8") from None


def _check_nodes(root: Any, file: str) -> None:
    """Duplicate keys, and the expanded size of the tree, without expanding it: an aliased node is
    counted once per use through a memo of each node's size."""
    import yaml

    sizes: dict[int, int] = {}

    def size(node) -> int:
        if id(node) in sizes:
            if sizes[id(node)] < 0:
                raise TuneoffError("an alias refers to a value that contains it", file=file,
                                   line=node.start_mark.line + 1)
            return sizes[id(node)]
        sizes[id(node)] = -1  # in progress: meeting it again means a cycle
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in seen:
                        raise TuneoffError(f"key '{key.value}' is given twice (first on line {seen[key.value]})",
                                           file=file, line=key.start_mark.line + 1, hint="remove one of them")
                    seen[key.value] = key.start_mark.line + 1
                total += size(key) + size(value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        if total > MAX_YAML_VALUES:
            raise TuneoffError(f"the YAML expands to more than {MAX_YAML_VALUES:,} values (aliases of aliases?)",
                               file=file, line=node.start_mark.line + 1)
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root)


@contextmanager
def located(path: str | Path, root: Any):
    """Give a TuneoffError raised inside the block the file and, from its dotted field, the line."""
    try:
        yield
    except TuneoffError as exc:
        exc.file = exc.file or str(path)
        if exc.field and exc.line is None:
            exc.line = line_of(root, exc.field)
        exc.args = (exc.render(),)
        raise


def load_spec(cls: type[T], path: str | Path, **extra: Any) -> T:
    """A spec dataclass from a YAML file; `extra` keys (e.g. base_dir) are added to its data."""
    data, root = read_yaml(path)
    with located(path, root):
        return from_dict(cls, {**data, **extra}, "", str(path))


def line_of(root: Any, dotted: str) -> int | None:
    """1-based line of `a.b[2].c` in a composed YAML node tree (the deepest part that exists)."""
    import yaml

    node, line = root, None
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        if part.startswith("[") and isinstance(node, yaml.SequenceNode):
            k = int(part[1:-1])
            node = node.value[k] if k < len(node.value) else None
        elif isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == part), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
            continue
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def to_dict(spec: Any) -> dict:
    """The plain-dict form of a spec (for the store and for fingerprints)."""
    return dataclasses.asdict(spec)
