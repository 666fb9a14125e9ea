"""Grounding of free text: invented numbers, names, tags and quotes are found; supported ones are not.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_grounding.py
"""

from __future__ import annotations

from tuneoff.grounding import (content_units, field_values, ground, parse_slots, slot_coverage,
                               summarise_grounding)

DIALOGUE = ("#Person1#: Ms. Dawson, I need you to take a dictation for me.\n#Person2#: Yes, sir...\n"
            "#Person1#: The memo goes out to all 45 employees by 3 pm. Instant messages are prohibited.")


def texts(units, kind=None):
    return [u.text for u in units if kind is None or u.kind == kind]


def test_units_are_numbers_names_tags_and_quotes_but_not_sentence_starters():
    units = content_units('#Person1# asks Ms. Dawson to send "the memo" to 45 people. The memo bans Instant '
                          'messages. She agrees, and three of them meet Tom at 10:30.')
    assert texts(units, "tag") == ["#Person1#"]
    assert texts(units, "quote") == ["the memo"]
    assert set(texts(units, "number")) == {"45", "three"}
    assert texts(units, "date") == ["10:30"]
    assert set(texts(units, "name")) == {"Dawson", "Instant", "Tom"}  # "The", "She", "Ms" are grammar


def test_an_invented_number_and_name_are_unsupported_and_supported_ones_are_not():
    faithful = ground("#Person1# asks Ms. Dawson to tell all 45 employees that instant messages are banned.",
                      DIALOGUE)
    assert not faithful.ungrounded and faithful.units
    invented = ground("#Person1# asks Ms. Johnson to tell all 50 employees that instant messages are banned.",
                      DIALOGUE)
    assert invented.ungrounded
    assert sorted(texts(invented.unsupported_by_input)) == ["50", "Johnson"]


def test_numbers_match_by_value_and_number_words_names_ignore_case_and_possessives():
    g = ground("Forty is not said, but Dawson's memo reaches forty-five? No: 45.0 employees, and 3 hours.",
               "dawson sends a memo to 45 employees; three hours")
    assert [u.text for u in g.unsupported_by_input] == ["Forty"]  # "three" == "3"; "45.0" == "45"


def test_a_speaker_tag_absent_from_the_dialogue_is_invented():
    g = ground("#Person3# joins #Person1#.", DIALOGUE)
    assert texts(g.unsupported_by_input) == ["#Person3#"]


def test_references_are_checked_separately_and_only_when_given():
    g = ground("#Person1# tells Dawson about 45 employees.", DIALOGUE,
               references=["#Person1# dictates a memo to #Person2#."])
    assert not g.unsupported_by_input
    assert sorted(texts(g.unsupported_by_references)) == ["45", "Dawson"]
    assert ground("Dawson", DIALOGUE).unsupported_by_references == ()


def test_the_per_arm_rates():
    results = [ground("#Person1# meets Dawson.", DIALOGUE), ground("#Person1# meets Johnson and Smith.", DIALOGUE),
               ground("they talk.", DIALOGUE), ground(None, DIALOGUE)]
    s = summarise_grounding(results, with_references=False)
    assert s.ungrounded_rate == 0.25 and s.n == 4
    assert s.unsupported_unit_share == 2 / 5  # units: #Person1#, Dawson, #Person1#, Johnson, Smith
    assert s.unreferenced_rate is None and set(s.examples) == {"Johnson", "Smith"}


def test_slots_are_covered_missing_or_contradicted():
    inputs = ["name[The Eagle], eatType[coffee shop], priceRange[cheap], customer rating[5]",
              "name[Zizzi], eatType[pub], priceRange[expensive], customer rating[3]"]
    slots = parse_slots(inputs[0])
    assert slots == {"name": "The Eagle", "eatType": "coffee shop", "priceRange": "cheap", "customer rating": "5"}
    vocab = field_values(inputs)
    cov = slot_coverage("The Eagle is an expensive coffee shop rated 5 out of 5.", slots, vocab)
    assert cov.covered == ("name", "eatType", "customer rating")
    assert cov.contradicted == ("priceRange",) and cov.missing == ()
    cov = slot_coverage("The Eagle serves coffee.", slots, vocab)
    assert set(cov.missing) == {"eatType", "priceRange", "customer rating"} and cov.total == 4


def test_slots_from_json_and_key_value_lines():
    assert parse_slots('{"city": "Paris", "stars": 4, "tags": ["x"]}') == {"city": "Paris", "stars": "4"}
    assert parse_slots("city: Paris\nstars: 4") == {"city": "Paris", "stars": "4"}
    assert parse_slots("just a sentence: nothing more") == {}
