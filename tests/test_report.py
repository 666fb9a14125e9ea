"""The report: escaping of dataset text, Markdown/JSON contents, and a real render in headless Chromium."""

import json
import shutil
import subprocess

import pytest

from tuneoff.compare import Curve, build_comparison
from tuneoff.compare.costs import money
from tuneoff.config.prices import PriceTable
from tuneoff.config.prices import Constraints
from tuneoff.report import write_report

from test_compare import arm

EVIL = '<script>console.error("xss")</script>'


@pytest.fixture
def comparison():
    few = arm("few-shot", "prompt", [1] * 70 + [0] * 30, tokens_in=600, spr=0.3)
    lora = arm("lora", "finetune", [1] * 90 + [0] * 10, setup=100)
    few.inputs = ["text"] * 100
    few.inputs[75] = EVIL  # an item the arms disagree on: shown in the item explorer
    few.tuning = {"trials": 7, "minutes": 1.5, "dev_metric": 0.71, "chosen": "shots=8, calibration=contextual", "of": None}
    lora.tuning = {"trials": 3, "minutes": 4.2, "dev_metric": 0.88, "chosen": "learning_rate=0.0005", "of": None}
    curves = [Curve("few-shot", "shots", [(0, 0.5, 0.4, 0.6), (8, 0.7, 0.6, 0.8)]),
              Curve("lora", "n_train", [(16, 0.6, 0.5, 0.7), (64, 0.9, 0.85, 0.95)])]
    return build_comparison("demo $x$ <b>", "sst2", "embedded:smollm2-135m-instruct", [few, lora], PriceTable(),
                            Constraints(monthly_requests=50_000), curves=curves,
                            latencies={"few-shot": [0.1, 0.2, 0.3], "lora": [0.05, 0.06]},
                            phases={"load": 1.0, "lora: train": 100.0})


def test_report_escapes_dataset_text(comparison, tmp_path):
    paths = write_report(comparison, PriceTable(), tmp_path)
    html = paths["html"].read_text()
    assert EVIL not in html and "\\u003cscript\\u003e" in html  # the explorer's data: text, escaped
    assert "demo $x$ &lt;b&gt;" in html
    assert html.count("<svg") >= 5  # scatter, curves, break-even, latency, 2 confusion matrices


def test_markdown_and_json_carry_the_numbers(comparison, tmp_path):
    paths = write_report(comparison, PriceTable(), tmp_path)
    md = paths["md"].read_text()
    assert "**Verdict: fine-tuning** (lora)" in md
    assert "| Performance | accuracy 0.700 [0.650, 0.750] | accuracy 0.900 [0.850, 0.950] |" in md
    assert "fine-tuning overtakes few-shot (0.700) from n=64" in md
    data = json.loads(paths["json"].read_text())
    assert data["verdict"]["arm"] == "lora"
    assert data["test"]["significant"] is True
    assert data["arms"][1]["correct"][:3] == [1.0, 1.0, 1.0]


def chromium_render(html_path, tmp_path):
    """(dom, console lines, screenshot path) from Debian's headless Chromium."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (apt-get install chromium); .ci/run installs it")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(flags + ["--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=120)
    shot = tmp_path / "shot.png"
    subprocess.run(flags + ["--window-size=1200,2400", f"--screenshot={shot}", html_path.as_uri()],
                   capture_output=True, text=True, timeout=120)
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    return dom.stdout, console, shot


def test_chromium_detects_console_errors(tmp_path):
    """The harness itself can fail: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction()</script></body></html>")
    _, console, _ = chromium_render(bad, tmp_path)
    assert any("undefinedFunction" in line for line in console)


def test_report_renders_in_chromium_without_console_errors(comparison, tmp_path):
    import matplotlib.image as mpimg

    paths = write_report(comparison, PriceTable(), tmp_path)
    dom, console, shot = chromium_render(paths["html"], tmp_path)
    assert console == []
    assert dom.count("<tr>") >= 12 and 'id="head-to-head"' in dom
    assert dom.count("<svg") >= 5
    tuning = dom[dom.index('id="tuning"'):dom.index("</table>", dom.index('id="tuning"'))]
    assert "shots=8, calibration=contextual" in tuning and "learning_rate=0.0005" in tuning and "4.2" in tuning
    curves = dom[dom.index('id="chart-curves"'):dom.index('id="chart-break-even"')]
    assert curves.count("opacity: 0.2") >= 2  # each learning curve drawn with its CI band
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] > 1000
    assert (pixels[..., :3].mean(axis=-1) < 0.5).mean() > 0.01  # dark ink: text, axes and curves drew


def test_one_off_parts_appear_in_every_report(comparison, tmp_path):
    paths = write_report(comparison, PriceTable(), tmp_path)
    parts = comparison.one_off["lora"]  # 100 s of training, 2 h prompt + 8 h data at $60/h
    assert parts.total == pytest.approx(parts.compute + parts.labels + parts.people)
    assert parts.people == pytest.approx(600.0) and parts.hours == 10
    md = paths["md"].read_text()
    assert (f"| lora | {money(parts.compute)} | {money(parts.labels)} | {money(parts.people)} (10 h) | "
            f"{money(parts.total)} |") in md
    assert money(parts.people) == "$600.00" and money(parts.labels) == "$0"
    html = paths["html"].read_text()
    assert 'id="one-off"' in html and f"${parts.people:.2f} (10 h)" in html and "$0.10 each" in html
    data = json.loads(paths["json"].read_text())
    assert data["one_off"]["lora"]["total"] == pytest.approx(parts.total)
    assert dict(data["rows"])["One-off cost"]["lora"].startswith(f"${parts.total:,.2f} = compute")
