"""Hostile content in the report: `<script>`, `onerror=`, `</script>` and friends in data, label
names, arm, experiment, task and model names and model outputs appear as text in report.html (checked
in headless Chromium: no payload runs) and are escaped in report.md."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tuneoff.compare import build_comparison
from tuneoff.config.prices import Constraints, PriceTable
from tuneoff.report import write_report

from .helpers import TALLY

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_compare import arm  # noqa: E402
from test_report import chromium_render  # noqa: E402

PAYLOADS = [
    '<script>console.error("XSS-script")</script>',
    '<img src=x onerror=console.error("XSS-img")>',
    '</script><script>console.error("XSS-close")</script>',
    '<svg onload=console.error("XSS-svg")>',
    '"><iframe srcdoc="<script>parent.console.error(`XSS-iframe`)</script>">',
    "<style>body{display:none}</style><a href=javascript:console.error('XSS-href')>x</a>",
    "{{ 7*7 }}{% raw %}",
]


@pytest.fixture
def hostile(tmp_path):
    labels = [PAYLOADS[1], PAYLOADS[3]]
    few = arm(PAYLOADS[0], "prompt", [1] * 60 + [0] * 40, labels=labels)
    tuned = arm(PAYLOADS[2], "finetune", [1] * 85 + [0] * 15, labels=labels, setup=50)
    for a in (few, tuned):
        a.targets = [labels[i % 2] for i in range(100)]
        a.predictions = [PAYLOADS[i % len(PAYLOADS)] if c == 0 else t for i, (t, c) in
                         enumerate(zip(a.targets, a.correct))]  # model outputs
        a.inputs = [PAYLOADS[i % len(PAYLOADS)] for i in range(100)]
        a.model = PAYLOADS[4]
    TALLY["inputs"] += len(PAYLOADS)
    return build_comparison(PAYLOADS[5], PAYLOADS[6], PAYLOADS[4], [few, tuned], PriceTable(),
                            Constraints(monthly_requests=1000), latencies={few.name: [0.1], tuned.name: [0.1]})


def test_hostile_names_and_data_run_no_script_in_chromium(hostile, tmp_path):
    paths = write_report(hostile, PriceTable(), tmp_path)
    html = paths["html"].read_text()
    for payload in PAYLOADS[:6]:
        assert payload not in html
    dom, console, _ = chromium_render(paths["html"], tmp_path)
    assert not [line for line in console if "XSS" in line], console
    # parsed by a browser, no payload became an element or an attribute
    assert not re.search(r"<(img|iframe|svg)[^>]*(onerror|onload|srcdoc)", dom, re.I)
    # the item explorer's data block holds every text as inert JSON (no `<` in it); outside it, as before
    page = re.sub(r'<script type="application/json" id="explorer-data">[^<]*</script>', "", dom)
    assert "javascript:" not in re.sub(r"&lt;.*?&gt;", "", page)
    assert "&lt;script&gt;" in dom  # shown, as text


def test_the_harness_sees_a_payload_that_runs(tmp_path):
    """The check above can fail: the same payload, unescaped, is caught."""
    page = tmp_path / "bad.html"
    page.write_text(f"<html><body>{PAYLOADS[1]}</body></html>")
    _, console, _ = chromium_render(page, tmp_path)
    assert any("XSS-img" in line for line in console)


def test_markdown_escapes_every_payload(hostile, tmp_path):
    md = write_report(hostile, PriceTable(), tmp_path)["md"].read_text()
    assert "<" not in md and ">" not in md.replace("&gt;", "")
    assert "&lt;script&gt;" in md
