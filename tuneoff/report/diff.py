"""`tuneoff diff`'s HTML page: the arm-by-arm comparison, the changed settings, and the item explorer
over the flipped items (each arm in A beside itself in B)."""

from __future__ import annotations

from pathlib import Path

from ..compare.diff import ExperimentDiff
from . import EXPLORER_JS, STYLE, environment, replace_file
from .items import explorer_json, item_matrix


def diff_html(d: ExperimentDiff) -> str:
    items = item_matrix(d.explorer_arms(), only=set(d.flipped_ids()))
    return environment().get_template("diff.html.j2").render(
        d=d, items=items, explorer_data=explorer_json(items), explorer_js=EXPLORER_JS, style=STYLE)


def write_diff(d: ExperimentDiff, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, diff_html(d))
    return path
