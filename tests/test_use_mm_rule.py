"""The drop-in rule on its fixtures: every mode against reviewed output;
and the rule's shape as scripts/coccinelle/ wants it."""

import re
import subprocess

import pytest

import support
from mmaudit_lib import spatch

FIXTURES = support.rule_fixtures()
URL = "https://lore.kernel.org/all/20200203201745.29986-2-aarcange@redhat.com/"


@pytest.fixture(scope="module")
def outputs():
    return support.all_rule_outputs()


@pytest.fixture(scope="module")
def rule_text():
    with open(support.RULE) as f:
        return f.read()


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
        source = f.read()
    expect = re.search(r"^// Expect: (.*)$", source, re.M).group(1).split()
    report = outputs[(name, "report")]
    if expect == ["none"]:
        assert report == ""
        assert outputs[(name, "context")] == ""
        assert outputs[(name, "org")] == ""
    else:
        assert expect[0] == "report"
        assert "without an mm_users reference (%s)" % expect[1] in report
        assert re.search(r"(?m)^-.*\b(kthread_use_mm|use_mm)\(", outputs[(name, "context")])
        # Each warning points at a borrow, and org mode lists the same ones.
        lines = source.split("\n")
        warnings = re.findall(r"(?m)^%s\.c:(\d+):\d+-\d+: WARNING: (\w+)\(" % name, report)
        assert warnings and len(warnings) == report.count("\n")
        for line, api in warnings:
            assert re.search(r"\b%s\(" % api, lines[int(line) - 1]), (line, api)
        todos = re.findall(r"(?m)^\* TODO \[\[view:%s\.c::face=ovl-face1::linb=(\d+)::"
                           % name, outputs[(name, "org")])
        assert sorted(todos) == sorted(line for line, _ in warnings)


# --- the rule as scripts/coccinelle/api/ wants it ---------------------------------

def test_header_follows_the_kernels_conventions(rule_text):
    head = rule_text.split("\n\n", 1)[0].split("\n")
    assert head[0] == "// SPDX-License-Identifier: GPL-2.0-only"
    assert head[1] == "///"
    description = []
    for line in head[2:]:
        if line == "///":
            break
        assert line.startswith("/// ")
        description.append(line)
    assert 1 <= len(description) <= 3 and "kthread_use_mm()" in description[0]
    fields = {}
    for line in head[len(description) + 3:]:
        m = re.match(r"// (\w+): ?(.*)$", line)
        if m and m.group(1) in ("Confidence", "Copyright", "URL", "Comments", "Options",
                                "Requires"):
            fields[m.group(1)] = m.group(2)
    assert fields["Confidence"] in ("High", "Moderate", "Low")
    assert re.fullmatch(r"\(C\) 2026 The mmaudit Project", fields["Copyright"])
    assert fields["URL"] == URL
    assert "use_mm()" in fields["Comments"] or "use_mm()" in "\n".join(head)
    assert fields["Options"] == "--no-includes --include-headers"
    assert fields["Requires"] == "1.1.0"
    # coccicheck greps these two anywhere in the file.
    assert rule_text.count("Options:") == 1 and rule_text.count("Requires:") == 1


def test_requires_is_met_by_what_the_rule_uses(rule_text):
    version = tuple(int(x) for x in spatch.spatch_version().split("."))
    required = tuple(int(x) for x in re.search(r"// Requires: (\S+)", rule_text).group(1)
                     .split("."))
    assert required == spatch.MIN_VERSION and version >= required


def test_fits_scripts_coccinelle(rule_text):
    # No longer than the longest rules of scripts/coccinelle (6.12: 358 and 369).
    assert rule_text.count("\n") <= 320
    assert not re.search(r"(?m)^\s*(#\s*include|using)\b", rule_text)   # one file


def _rules(text):
    """[(header, body)] of every rule of TEXT."""
    parts = re.split(r"(?m)^(@[^@]*@)$", text)    # header, metavariables, @@, body, ...
    return [(parts[i], parts[i + 3]) for i in range(1, len(parts), 4)]


def test_every_one_mode_rule_has_its_guard(rule_text):
    rules = _rules(rule_text)
    assert "@@" not in [h for h, _ in rules] and rules[0][0] == "@initialize:python@"
    scripts = [h for h, _ in rules if h.startswith("@script:python")]
    for header, body in rules:
        depends = re.search(r"depends on (.*)@$", header, re.S)
        depends = " ".join(depends.group(1).split()) if depends else ""
        if re.search(r"(?m)^[-+]", body):               # a rewrite
            assert re.match(r"patch\b", depends), header
        if re.search(r"(?m)^\*", body):                 # a context match
            assert re.match(r"context\b", depends), header
        if header.startswith("@script:python") and "coccilib." in body:
            assert re.match(r"(report|org)\b", depends), header
    # One report and one org rule print, building the message in Python.
    printers = [h for h, b in rules if "coccilib.report." in b or "coccilib.org." in b]
    assert len(printers) == 2 and len(scripts) == 3
    assert rule_text.count("def message(") == 1


def test_file_filter_needs_a_borrow():
    """spatch's file filter (its "grep query") in every mode: only files
    that name a borrow are parsed, not the whole tree."""
    for mode in support.MODES:
        proc = subprocess.run([spatch.spatch_path(), "--parse-cocci", "-D", mode, support.RULE],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        query = proc.stdout.split("Grep query\n", 1)[1].split("\n", 1)[0]
        assert query and set(query.split(" || ")) <= {"use_mm", "kthread_use_mm",
                                                      "kthread_unuse_mm"}, (mode, query)


def test_org_escapes_brackets(tmp_path):
    """coccilib.org links are [[view:...][message]]: an mm with brackets in
    its expression must not end the link early."""
    (tmp_path / "ring.c").write_text(
        "struct ring { struct mm_struct *mm; };\n"
        "void work(struct ring *r, int i)\n{\n\tkthread_use_mm(r[i].mm);\n"
        "\tkthread_unuse_mm(r[i].mm);\n}\n")
    report, _, rc = spatch.run_rule_on_file(support.RULE, str(tmp_path / "ring.c"), "report")
    assert rc == 0 and "kthread_use_mm(r[i].mm) without an mm_users reference (unresolved)" \
        in report
    org, _, rc = spatch.run_rule_on_file(support.RULE, str(tmp_path / "ring.c"), "org")
    assert rc == 0
    (todo,) = org.splitlines()
    assert todo.startswith("* TODO [[view:ring.c::face=ovl-face1::linb=4::colb=1::cole=15][")
    text = todo.split("][", 1)[1]
    assert text.endswith("]]") and "[" not in text and "]" not in text[:-2]
    assert "kthread_use_mm(r@(i).mm) without an mm_users reference (unresolved)" in text
