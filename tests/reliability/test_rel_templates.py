"""Hostile prompt templates: sandbox escapes are blocked, runaway templates are bounded, and every
refusal is a `TuneoffError` naming the arm field — never a traceback, a hang or gigabytes."""

from __future__ import annotations

import resource

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuneoff.errors import TuneoffError
from tuneoff.prompting.templates import Template

from .helpers import TALLY, no_hang

VARS = {"input": "hello", "labels": ["positive", "negative"], "instruction": "classify"}

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__['os'].system('touch /tmp/pwned') }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ '{0.__class__}'.format(input) }}",
    "{{ '%s'.__mod__ }}",
    "{{ labels.__class__.__dict__ }}",
    "{{ input|attr('__class__') }}",
    "{{ (input|attr('__class__')).__base__ }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% from 'x' import y %}",
    "{% extends '/etc/passwd' %}",
]

RUNAWAY = [
    "{{ range(10**9)|list }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% for i in range(5000) %}{% for j in range(5000) %}x{% endfor %}{% endfor %}",
    "{{ 'a' * 1000000000 }}",
    "{{ [0] * 100000000 }}",
    "{{ 10 ** (10 ** 8) }}",
    "{{ 7 ** 99999 }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{% set a = 'x' * 900000 %}{{ a ~ a }}",
    "{% set a = 'x' * 900000 %}" + "{% set a = a ~ a %}" * 10 + "{{ a|length }}",
    "{% set a = 'x' * 900000 %}{{ a + a }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'x'|indent(1000000000, true) }}",
    "{{ lipsum(100000, true, 1000000, 10000000) }}",
    "{{ '{0:>1000000000}'.format(1) }}",
    "{{ '%1000000000s' % input }}",
    "{{ (('a' * 999999)|list)|join('aaaa') }}",
    "{{ ('a' * 1000)|replace('a', 'b' * 999)|replace('b', 'c' * 2000) }}",
    "{{ ('h' * 1000).replace('h', 'h' * 999).replace('h', 'h' * 2000) }}",
    "{% for i in range(100) %}{{ 'x' * 900000 }}{% endfor %}",
    "{% set a = 'x' * 900000 %}" + "{% set a = a + a %}" * 10 + "{{ a|length }}",
    "{{ ((('a' * 999999)|list)|join('a' * 999))|length }}",
    "{{ (('a\n' * 499999)|indent('b' * 999))|length }}",
    "{{ ('%1000000000s'|format(input))|length }}",
    "{{ (('a' * 999999)|wordwrap(1, true, 'b' * 999))|length }}",
    "{% for x in labels recursive %}{{ loop(labels) }}{% endfor %}",
]


def render(source: str) -> str:
    TALLY["inputs"] += 1
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with no_hang(20):
            return Template(source, "arms[0].prompt.template").render(VARS)
    finally:  # refused or not, the attempt may not have cost memory (peak RSS, in KiB)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * 1024, "used > 300 MB"


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_are_blocked_with_a_clear_error(source):
    with pytest.raises(TuneoffError) as info:
        render(source)
    assert info.value.field == "arms[0].prompt.template"
    assert "unsafe" in str(info.value) or "not allowed" in str(info.value) or "undefined" in str(info.value) \
        or "unknown variable" in str(info.value)


@pytest.mark.parametrize("source", RUNAWAY)
def test_runaway_templates_are_bounded(source):
    with pytest.raises(TuneoffError, match="template"):
        render(source)


@pytest.mark.parametrize("source,expected", [
    ("{{ input }} -> {{ labels|join(', ') }}", "hello -> positive, negative"),
    ("{% for l in labels %}{{ loop.index }}. {{ l ~ '!' }}\n{% endfor %}", "1. positive!\n2. negative!\n"),
    ("{{ 'ab' * 3 }}{{ 2 ** 10 }}{{ '%s' % input }}{{ '{}'.format(input) }}", "ababab1024hellohello"),
    ("{% for i in range(3) %}{{ i }}{% endfor %}{{ (input|upper)|replace('L', 'l') }}", "012HEllO"),
])
def test_ordinary_templates_still_render(source, expected):
    assert render(source) == expected


@pytest.mark.fuzz
@given(parts=st.lists(st.sampled_from(["{{", "}}", "{%", "%}", "for x in range(", "range(", ")", "*", "**",
                                       "99999999", "'a'", "input", "labels", "~", "|join", "|list", "endfor",
                                       "macro f()", "f()", "endmacro", "if", "endif", ".__class__", "(", "[0]",
                                       "|center(", "|replace(", ",", "set a =", "a", " ", "{#", "#}", "loop"]),
                      max_size=14))
def test_fuzzed_templates_render_or_fail_cleanly(parts):
    source = "".join(parts)
    try:
        render(source)
    except TuneoffError as exc:
        assert exc.field == "arms[0].prompt.template"
