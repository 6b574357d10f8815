"""cocci/mmput_in_completion.cocci, the drop-in for the put that waits on
its own iocb: every fixture against its reviewed output in each mode, and
against the "// Expect:" line written before the rule ran."""

import os
import re

import pytest

import support

RULE = os.path.join(support.ROOT, "cocci", "mmput_in_completion.cocci")
FIXTURES = os.path.join(support.ROOT, "tests", "fixtures", "put_in_completion")
MODES = ("report", "context", "org")


def fixtures():
    return sorted(f[:-2] for f in os.listdir(FIXTURES) if f.endswith(".c"))


def output(name, mode):
    out, err, rc = support.spatch.run_rule_on_file(RULE, os.path.join(FIXTURES, name + ".c"), mode)
    assert rc == 0, err
    return out


def expected_path(name, mode):
    return os.path.join(FIXTURES, "%s.%s.expected" % (name, mode))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", fixtures())
def test_mode_output(name, mode):
    with open(expected_path(name, mode)) as f:
        assert output(name, mode) == f.read()


@pytest.mark.parametrize("name", fixtures())
def test_report_agrees_with_expect_line(name):
    with open(os.path.join(FIXTURES, name + ".c")) as f:
        source = f.read()
    expect = re.search(r"^// Expect: (.*)$", source, re.M).group(1)
    report = output(name, "report")
    if expect == "none":
        assert report == "" and output(name, "context") == "" and output(name, "org") == ""
        return
    assert expect == "put-in-completion"
    found = re.findall(r"(?m)^%s\.c:(\d+):\d+-\d+: WARNING: mmput\(\) before the iocb "
                       r"completes \(put-in-completion\)" % name, report)
    assert len(found) == 1 == report.count("\n")
    assert re.search(r"\bmmput\(", source.split("\n")[int(found[0]) - 1])
    assert re.search(r"(?m)^-\s*mmput\(", output(name, "context"))
    assert "linb=%s::" % found[0] in output(name, "org")


@pytest.mark.parametrize("name", fixtures())
def test_fixture_compiles(name):
    proc = support.subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Werror", "-I",
                                   support.INCLUDE, os.path.join(FIXTURES, name + ".c")],
                                  capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
