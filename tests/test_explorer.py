"""The item explorer: the item matrix (every test item x arm), its export, and the page in a real
browser (Debian's headless Chromium): all items listed, the filters leave exactly the right items,
nothing overflows the page at 1400 px with 7 arms."""

import csv
import json
import random
import re
import shutil
import subprocess

import pytest

from tuneoff.compare import ItemFlag, build_comparison
from tuneoff.config.prices import Constraints, PriceTable
from tuneoff.report import write_report
from tuneoff.report.items import explorer_json, item_matrix, write_items

from test_compare import arm

NAMES = ["zero-shot", "few-shot", "chain-of-thought", "full", "freeze", "lora", "lora+few-shot"]
KINDS = ["prompt", "prompt", "prompt", "finetune", "finetune", "finetune", "combined"]


def seven_arms(n=120, seed=0):
    """Seven arms on n items with long inputs, raw outputs that differ from the answers (chain of
    thought), flags, absolute model paths, and one arm stopped early (adaptive evaluation)."""
    rng = random.Random(seed)
    arms = []
    for j, (name, kind) in enumerate(zip(NAMES, KINDS)):
        a = arm(name, kind, [int(rng.random() < 0.5 + 0.06 * j) for _ in range(n)], setup=120.0 * j,
                tokens_in=40 + 90 * j)
        a.item_ids = [f"test-{i}" for i in range(n)]
        a.inputs = [("a review that rambles on " * (1 + i % 15)).strip() for i in range(n)]
        a.outputs = [f"Let me think step by step. The answer is {p}." if kind == "prompt" and j == 2 else p
                     for p in a.predictions]
        a.flags = [int(ItemFlag.FORMAT) if j == 2 and i % 29 == 0 else 0 for i in range(n)]
        a.model = f"/home/someone/experiments/run-4/models/{name}-e485d77357" if kind != "prompt" else "embedded:x"
        arms.append(a)
    stopped = arms[0]  # scored only the first 80 items
    for field in ("item_ids", "inputs", "outputs", "flags", "predictions", "targets", "correct"):
        setattr(stopped, field, getattr(stopped, field)[:80])
    return arms


def comparison(arms):
    return build_comparison("seven arms", "sst2", "embedded:smollm2-135m-instruct", arms, PriceTable(),
                            Constraints(monthly_requests=50_000),
                            latencies={a.name: [0.1, 0.2 + k] for k, a in enumerate(arms)})


def test_matrix_holds_every_item_of_every_arm_and_marks_unscored_cells():
    arms = seven_arms()
    m = item_matrix(arms)
    assert m.ids == [f"test-{i}" for i in range(120)] and m.binary
    assert m.arms[0].scores[100] is None and m.arms[1].scores[100] is not None
    cot = m.arms[2]
    assert cot.outputs[0].startswith("Let me think") and cot.predictions[0] in ("a", "b")
    assert cot.flags[0] == ItemFlag.FORMAT and m.flagged(0) and not m.flagged(1)
    # an item disagrees when the arms that scored it gave different answers
    for k in range(120):
        answers = {a.predictions[k] for a in m.arms if a.scores[k] is not None}
        assert m.disagree(k) == (len(answers) > 1)
    assert 0 < len(m.disagreeing_ids()) < 120


def test_continuous_scores_are_not_right_or_wrong():
    a, b = arm("x", "prompt", [1, 0, 1]), arm("y", "finetune", [0, 1, 1])
    b.correct = [0.25, 0.5, 0.75]  # e.g. chrF per item
    m = item_matrix([a, b])
    assert not m.binary and m.spread(0) == pytest.approx(0.75)
    assert m.payload()["arms"][1]["score"] == [0.25, 0.5, 0.75]


def test_embedded_json_cannot_close_its_script_element():
    a = arm("x", "prompt", [1, 0])
    a.inputs = ["</script><script>alert(1)</script>", "a & b"]
    text = explorer_json(item_matrix([a]))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["inputs"][0] == a.inputs[0]


def test_items_export_as_jsonl_and_csv(tmp_path):
    m = item_matrix(seven_arms())
    rows = [json.loads(line) for line in write_items(m, tmp_path / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 120 and rows[0]["arms"]["chain-of-thought"]["flags"] == ["format violation"]
    assert rows[100]["arms"]["zero-shot"]["score"] is None
    with open(write_items(m, tmp_path / "items.csv"), newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 120 and table[5]["id"] == "test-5"
    assert table[5]["chain-of-thought:output"].startswith("Let me think")
    assert float(table[5]["lora:score"]) == m.arms[5].scores[5]


def test_items_export_refuses_an_unknown_format(tmp_path):
    from tuneoff.errors import TuneoffError

    with pytest.raises(TuneoffError, match="JSONL or CSV"):
        write_items(item_matrix(seven_arms()), tmp_path / "items.xlsx")


# -- in a real browser ---------------------------------------------------------------------------

PROBE = """<script>
window.addEventListener("load", function () {
  var w = window.innerWidth, over = [];
  document.querySelectorAll("body *").forEach(function (e) {
    if (e.getBoundingClientRect().right > w + 0.5 && !e.closest(".scroll")) over.push(e.tagName + (e.id ? "#" + e.id : ""));
  });
  var out = document.createElement("pre"); out.id = "probe";
  out.textContent = JSON.stringify({inner: w, scroll: document.documentElement.scrollWidth, over: over.slice(0, 20)});
  document.body.appendChild(out);
});
</script>"""
"""Appended to a copy of the page: what sticks out past the window, outside a horizontal scroller."""


def chromium_dom(url, tmp_path, width=1400):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed (apt-get install chromium); scripts/setup.sh --test installs it")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--window-size={width},900",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0"]
    run = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    return run.stdout, [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def listed(dom):
    return re.findall(r'<tr class="item[^"]*" data-id="([^"]+)"', dom)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer")
    arms = seven_arms()
    return write_report(comparison(arms), PriceTable(), out)["html"], item_matrix(arms)


def test_explorer_lists_every_test_item(page, tmp_path):
    html, m = page
    dom, console = chromium_dom(html.as_uri() + "#items?n=all", tmp_path)
    assert console == []
    assert listed(dom) == m.ids
    first, _ = chromium_dom(html.as_uri(), tmp_path)  # a plain visit shows the first page, counts them all
    assert len(listed(first)) == 50 and "of 120 matching (120 test items in all)" in first


def test_disagree_filter_leaves_exactly_the_disagreeing_items(page, tmp_path):
    html, m = page
    dom, _ = chromium_dom(html.as_uri() + "#items?f=disagree&n=all", tmp_path)
    assert listed(dom) == m.disagreeing_ids()
    assert len(listed(dom)) < len(m.ids)  # the filter removed some items


def test_worse_filter_search_and_sort(page, tmp_path):
    html, m = page
    few, lora = m.arms[1], m.arms[5]
    dom, _ = chromium_dom(html.as_uri() + "#items?f=worse&a=few-shot&b=lora&n=all", tmp_path)
    assert listed(dom) == [i for k, i in enumerate(m.ids) if few.scores[k] == 0 and lora.scores[k] == 1]
    dom, _ = chromium_dom(html.as_uri() + "#items?q=TEST-7&n=all", tmp_path)  # case-insensitive
    assert set(listed(dom)) == {i for i in m.ids if "test-7" in i}
    dom, _ = chromium_dom(html.as_uri() + "#items?sort=spread&n=all", tmp_path)
    order = [m.ids.index(i) for i in listed(dom)]
    assert [m.spread(k) for k in order] == sorted((m.spread(k) for k in order), reverse=True)


def test_nothing_overflows_at_1400_px_with_seven_arms(page, tmp_path):
    html, _ = page
    probed = tmp_path / "probed.html"
    probed.write_text(html.read_text() + PROBE)
    dom, _ = chromium_dom(probed.as_uri(), tmp_path)
    probe = json.loads(re.search(r'<pre id="probe">([^<]*)</pre>', dom).group(1))
    assert probe["inner"] == 1400
    assert probe["over"] == [] and probe["scroll"] <= 1400, probe


def test_the_overflow_probe_sees_a_wide_table(tmp_path):
    """The check above can fail: a 2,000 px table outside a scroller is caught."""
    page = tmp_path / "wide.html"
    page.write_text('<html><body><table id="wide"><tr><td style="min-width:2000px">x</td></tr></table></body></html>'
                    + PROBE)
    dom, _ = chromium_dom(page.as_uri(), tmp_path)
    probe = json.loads(re.search(r'<pre id="probe">([^<]*)</pre>', dom).group(1))
    assert "TABLE#wide" in probe["over"] and probe["scroll"] > 1400
