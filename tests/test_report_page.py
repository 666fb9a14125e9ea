"""The report's first screen, its short cells, money, header facts, and legible plots."""

import json
import re

import pytest

from tuneoff.compare.costs import money
from tuneoff.config.prices import PriceTable
from tuneoff.report import to_html, write_report
from tuneoff.report.page import header_facts, scoreboard, short_model, split_cell
from tuneoff.report.plots import break_even_chart, confusion, confusion_view

from test_explorer import PROBE, chromium_dom, comparison, seven_arms


def test_money_reads_like_money():
    assert [money(x) for x in (0, 0.1, 0.0048, 8.1e-06, 1, 315.6023, 12_345.6)] == \
        ["$0", "$0.10", "$0.0048", "$0.0000081", "$1.00", "$315.60", "$12,346"]


def test_scoreboard_marks_the_best_cell_of_each_column_but_not_a_wide_tie():
    arms = seven_arms()
    c = comparison(arms)
    board = {r.arm: r for r in scoreboard(c, PriceTable())}
    top = max(arms, key=lambda a: a.metric)
    assert [n for n, r in board.items() if "metric" in r.best] == [top.name]
    cheapest = min(arms, key=lambda a: a.tokens_in)  # hardware prices: cost follows seconds, equal here
    assert not any("cost_1k" in r.best for r in board.values())  # every arm costs the same: nobody is marked
    assert "one_off" in board[cheapest.name].best  # no training time, no data hours


def test_cells_are_short_with_the_rest_kept():
    assert split_cell("Cost per 1k requests", "$0.0028 (50 in / 1.0 out tokens; 0.1 s per request)") == \
        ("$0.0028", "50 in / 1.0 out tokens; 0.1 s per request")
    assert split_cell("One-off cost", "$120.00 = compute $0 + labels $0") == ("$120.00", "compute $0 + labels $0")
    assert split_cell("Performance", "accuracy 0.700 [0.650, 0.750]") == ("accuracy 0.700 [0.650, 0.750]", "")
    cell = "accuracy 0.500 [0.4, 0.6]; NOT A FAIR REPRESENTATIVE of its side (never predicts b)"
    assert split_cell("Performance", cell)[0] == "accuracy 0.500 [0.4, 0.6]; not a fair representative of its side"
    path = "/home/someone/exp/models/lora-e485d77357"
    assert split_cell("Model", path) == ("lora", path)
    assert short_model("embedded:smollm2-135m-instruct") == "smollm2-135m-instruct"


def test_header_says_where_and_when_it_ran():
    c = comparison(seven_arms())
    c.experiment_id, c.created_at, c.dtype = 12, 1_790_000_000.0, "bfloat16"
    c.environment = {"tuneoff": "0.1.0", "torch": "2.13.0", "transformers": "4.99", "cpu": "AMD EPYC 9R14", "gpu": None}
    facts = dict(header_facts(c))
    assert facts["experiment"] == "12" and facts["run"].startswith("2026-")
    assert facts["tuneoff / torch / transformers"] == "0.1.0 / 2.13.0 / 4.99"
    assert facts["CPU"] == "AMD EPYC 9R14" and facts["GPU"] == "none" and facts["dtype"] == "bfloat16"
    html = to_html(c, PriceTable())
    assert "AMD EPYC 9R14" in html and "tuneoff report 12 --items" in html


def test_first_screen_holds_the_verdict_the_scoreboard_and_what_next(tmp_path):
    html = write_report(comparison(seven_arms()), PriceTable(), tmp_path)["html"]
    probed = tmp_path / "probed.html"
    probed.write_text(html.read_text() + PROBE.replace(
        "over: over.slice(0, 20)", "over: over.slice(0, 20), bottom: document.getElementById('next')"
        ".getBoundingClientRect().bottom, board: document.querySelectorAll('#scoreboard tbody tr').length"))
    dom, console = chromium_dom(probed.as_uri(), tmp_path)
    probe = json.loads(re.search(r'<pre id="probe">([^<]*)</pre>', dom).group(1))
    assert console == [] and probe["board"] == 7
    assert probe["bottom"] <= 900, probe  # verdict, 7-arm scoreboard and pointers above the fold of 1400x900
    assert 'href="#items?f=disagree&amp;sort=spread"' in dom


def test_every_head_to_head_dimension_is_defined_in_the_glossary():
    from tuneoff.report.page import GLOSSARY

    c = comparison(seven_arms())
    terms = {t.lower() for t in GLOSSARY}
    for needed in ("label tv", "agreement", "collapsed", "one-off cost", "cost per 1k requests", "break-even",
                   "p50 / p95 latency", "paired test", "flipped item"):
        assert needed in terms
    assert c.rows  # the table these terms describe


def test_confusion_view_names_the_most_confused_classes_and_drops_an_empty_other():
    labels = [f"class_{i}" for i in range(40)]
    matrix = [[0] * 41 for _ in labels]
    for i in range(40):
        matrix[i][i] = 10
    matrix[3][7] = matrix[7][3] = 6  # the two classes most mixed up
    matrix[20][21] = 2
    rows, cols, cells, note = confusion_view(labels, matrix, top=4)
    assert {"class_3", "class_7", "class_20", "class_21"} == set(rows) and "other" not in cols
    assert note == "the 4 of 40 classes most often confused"
    matrix[5][40] = 1  # one answer outside the labels: the column appears
    assert confusion_view(labels[:6], [r[:6] + [r[40]] for r in matrix[:6]])[1][-1] == "other"


def test_confusion_numbers_contrast_with_their_cell():
    svg = confusion(["negative", "positive"], [[90, 10, 0], [5, 95, 0]], "lora")
    assert "negative" in svg and "positive" in svg and ">other<" not in svg
    assert re.search(r"fill: ?#ffffff", svg)  # the dark cells' numbers are white


def test_break_even_chart_marks_the_expected_volume():
    c = comparison(seven_arms())
    assert c.break_even is not None and c.break_even.expected == 50_000
    assert "your volume 50,000/month" in break_even_chart(c)
