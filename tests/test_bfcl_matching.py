"""BFCL-style tool-call matching, on ground truths read from the real BFCL files in shared/data."""

import pytest

from slmshift.demo.datasets import load_bfcl
from slmshift.evaluation.tool_calls import match_calls, normalize_string


@pytest.fixture(scope="module")
def truths():
    examples = load_bfcl(("simple_python", "parallel", "multiple"))
    return {example.id: example.ground_truth for example in examples}


def test_exact_call_matches(truths):
    # simple_python_0: calculate_triangle_area(base=10, height=5), unit optional.
    assert match_calls([("calculate_triangle_area", {"base": 10, "height": 5})], truths["simple_python_0"]).matched


def test_optional_argument_may_take_a_listed_value(truths):
    call = ("calculate_triangle_area", {"base": 10, "height": 5, "unit": "units"})
    assert match_calls([call], truths["simple_python_0"]).matched


def test_optional_argument_with_unlisted_value_fails(truths):
    call = ("calculate_triangle_area", {"base": 10, "height": 5, "unit": "meters"})
    result = match_calls([call], truths["simple_python_0"])
    assert not result.matched and "unit" in result.reason


def test_wrong_value_fails_and_names_the_argument(truths):
    result = match_calls([("calculate_triangle_area", {"base": 10, "height": 6})], truths["simple_python_0"])
    assert not result.matched and "height" in result.reason


def test_missing_required_argument_fails(truths):
    result = match_calls([("calculate_triangle_area", {"base": 10})], truths["simple_python_0"])
    assert not result.matched and "height" in result.reason and "missing" in result.reason


def test_wrong_function_name_fails(truths):
    result = match_calls([("calculate_area", {"base": 10, "height": 5})], truths["simple_python_0"])
    assert not result.matched and "calculate_area" in result.reason


def test_int_passes_where_float_list_is_expected(truths):
    # simple_python_13: interval [1.0, 3.0]; function has three acceptable spellings.
    call = ("calculate_area_under_curve", {"function": "lambda x: x**2", "interval": [1, 3]})
    assert match_calls([call], truths["simple_python_13"]).matched


def test_float_where_integer_expected_fails(truths):
    result = match_calls([("math.factorial", {"number": 5.0})], truths["simple_python_1"])
    assert not result.matched


def test_strings_compare_without_case_spaces_and_punctuation(truths):
    # parallel_0: spotify.play(artist="Taylor Swift", duration=20) and (Maroon 5, 15).
    calls = [("spotify.play", {"artist": "maroon-5", "duration": 15}),
             ("spotify.play", {"artist": "TAYLOR SWIFT", "duration": 20})]
    assert match_calls(calls, truths["parallel_0"]).matched
    assert normalize_string("New York, NY") == "newyorkny"


def test_parallel_calls_match_in_any_order_but_not_twice(truths):
    twice = [("spotify.play", {"artist": "Taylor Swift", "duration": 20})] * 2
    assert not match_calls(twice, truths["parallel_0"]).matched
    assert not match_calls(twice[:1], truths["parallel_0"]).matched


def test_nested_dict_values_match_key_by_key(truths):
    # parallel_29: population is a dict whose keys list acceptable values.
    calls = [
        ("waste_calculation.calculate", {"population": {"adults": 0, "children": 0, "singles": 1}, "location": "NYC"}),
        ("waste_calculation.calculate", {"population": {"adults": 2, "children": 2, "singles": 0}, "location": "LA"}),
    ]
    assert match_calls(calls, truths["parallel_29"]).matched
    calls[0] = ("waste_calculation.calculate", {"population": {"adults": 1, "children": 0, "singles": 1}, "location": "NYC"})
    assert not match_calls(calls, truths["parallel_29"]).matched
