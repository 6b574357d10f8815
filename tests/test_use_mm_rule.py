"""The drop-in rule on its fixtures: every mode against reviewed output."""

import re
import subprocess

import pytest

import support

FIXTURES = support.rule_fixtures()


@pytest.fixture(scope="module")
def outputs():
    return support.all_rule_outputs()


def test_enough_fixtures():
    assert len(FIXTURES) >= 20


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_compiles(name):
    proc = subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Werror", "-I", support.INCLUDE,
                           "%s/%s.c" % (support.RULE_FIXTURES, name)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("mode", support.MODES)
@pytest.mark.parametrize("name", FIXTURES)
def test_mode_output(outputs, name, mode):
    with open(support.expected_path(name, mode)) as f:
        expected = f.read()
    assert outputs[(name, mode)] == expected


@pytest.mark.parametrize("name", FIXTURES)
def test_report_agrees_with_expect_line(outputs, name):
    """The fixture's own "// Expect:" line, written before the rule ran."""
    with open("%s/%s.c" % (support.RULE_FIXTURES, name)) as f:
        expect = re.search(r"^// Expect: (.*)$", f.read(), re.M).group(1).split()
    report = outputs[(name, "report")]
    if expect == ["none"]:
        assert report == ""
        assert outputs[(name, "context")] == ""
    else:
        assert expect[0] == "report"
        assert "without an mm_users reference (%s)" % expect[1] in report
        assert re.search(r"(?m)^-.*\b(kthread_use_mm|use_mm)\(", outputs[(name, "context")])
