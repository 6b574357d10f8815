"""The rules in cocci/ are generated from cocci/src/ (scripts/gen-cocci):
the checked-in files are exactly what the sources give, each says so, the
shared pieces are written once, and the generator refuses bad sources."""

import collections
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

import support

GEN = os.path.join(support.ROOT, "scripts", "gen-cocci")
COCCI = os.path.join(support.ROOT, "cocci")
SRC = os.path.join(COCCI, "src")


def _module(name, path):
    """The Python file PATH as a module, leaving no __pycache__ beside it."""
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


gen = _module("gen_cocci", GEN)
helpers = _module("cocci_helpers", os.path.join(SRC, "helpers.py"))
RULES = sorted(f for f in os.listdir(COCCI) if f.endswith(".cocci"))


def _read(path):
    with open(path) as f:
        return f.read()


def test_every_rule_is_generated():
    assert RULES == sorted(t[:-len(".in")] for t in gen.templates())
    assert "use_mm.cocci" in RULES and len(RULES) == 9


def test_regeneration_gives_the_same_bytes(tmp_path):
    proc = subprocess.run([sys.executable, GEN, "--out", str(tmp_path)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path)) == RULES
    for name in RULES:
        with open(os.path.join(COCCI, name), "rb") as a, open(tmp_path / name, "rb") as b:
            assert a.read() == b.read(), "cocci/%s is not what cocci/src/ gives: make cocci" % name
    check = subprocess.run([sys.executable, GEN, "--check"], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr


def test_check_names_a_hand_edited_rule(tmp_path):
    """--check (make lint, tests/bless.py) fails on an edit, and a
    regeneration undoes it; on a copy of the checkout."""
    root = tmp_path / "copy"
    shutil.copytree(os.path.join(support.ROOT, "cocci"), root / "cocci")
    (root / "scripts").mkdir()
    shutil.copy(GEN, root / "scripts" / "gen-cocci")
    rule = root / "cocci" / "audit_stores.cocci"
    rule.write_text(rule.read_text().replace("mmu_notifier_get, ", ""))
    run = lambda *a: subprocess.run([sys.executable, str(root / "scripts" / "gen-cocci")]  # noqa: E731
                                    + list(a), capture_output=True, text=True)
    check = run("--check")
    assert check.returncode == 1 and "cocci/audit_stores.cocci" in check.stderr, check.stderr
    assert "use_mm.cocci" not in check.stderr
    assert run().stdout == "wrote %s\n" % os.path.relpath(str(rule))
    assert run("--check").returncode == 0
    assert rule.read_text() == _read(os.path.join(COCCI, "audit_stores.cocci"))


@pytest.mark.parametrize("name", RULES)
def test_rule_says_it_is_generated_and_from_what(name):
    text = _read(os.path.join(COCCI, name))
    head = text.split("\n@", 1)[0]
    lines = [l for l in text.split("\n") if l.startswith("// Generated ")]
    assert len(lines) == 1 and lines[0] in head.split("\n")
    m = re.match(r"// Generated from cocci/src/(\S+)((?:, \S+)*) by scripts/gen-cocci: do not edit$",
                 lines[0])
    assert m and m.group(1) == name + ".in", lines[0]
    sources = m.group(2).split(", ")[1:]
    for source in sources:
        assert os.path.exists(os.path.join(SRC, source)), source
    # Exactly the libraries whose fragments the rule uses.
    _, generator = gen.generate()
    used = generator.used[name + ".in"]
    libs = {generator.fragments[n].where.split(":")[0] for n in used if n in generator.fragments}
    assert set(sources) == libs | ({"helpers.py"} & used)


def _sources():
    """The source files of cocci/src/ (no __pycache__)."""
    return sorted(n for n in os.listdir(SRC) if n.endswith((".cocci", ".cocci.in", ".py")))


def test_no_keep_in_step_comment():
    files = [os.path.join(COCCI, n) for n in RULES + ["macros.h"]]
    for path in files + [os.path.join(SRC, n) for n in _sources()]:
        assert not re.search(r"keep\w* (them |it )?in step", _read(path), re.I), path


def _significant(line):
    line = line.strip()
    if not line or line.startswith("//") or line in ("@@", "(", ")", "|", "...", "{", "}",
                                                      "<...", "...>"):
        return None
    return re.sub(r"\s+", " ", line)


def test_no_source_repeats_another():
    """Four significant lines that stand in two source files are a piece
    to share through a fragment."""
    places = collections.defaultdict(set)
    for name in _sources():
        lines = [l for l in map(_significant, _read(os.path.join(SRC, name)).split("\n")) if l]
        for i in range(len(lines) - 3):
            places[tuple(lines[i:i + 4])].add(name)
    assert {k: sorted(v) for k, v in places.items() if len(v) > 1} == {}


def test_shared_pieces_are_shared():
    """What the rules share, written once in cocci/src/ and used by each."""
    _, generator = gen.generate()
    users = collections.defaultdict(set)
    for template, used in generator.used.items():
        for name in used:
            users[name].add(template[:-len(".cocci.in")])
    fact_rules = {"audit_sites", "audit_callers", "audit_stores", "borrow_context", "balance",
                  "arch_shortcuts"}
    assert users["fact_init"] == users["done_rule"] == fact_rules
    assert users["helpers.py"] == fact_rules | {"use_mm"}
    assert users["pin"] >= {"use_mm", "audit_sites", "audit_callers"}
    assert users["pinned_or_not"] == {"audit_sites", "audit_callers", "audit_stores"}
    assert users["pin_fact"] == {"audit_sites", "audit_stores"}
    assert users["unpinned_paths"] == users["owner_rule"] == {"use_mm", "audit_sites"}
    assert users["holder_set"] == users["users_dropped"] == {"use_mm", "audit_stores"}
    assert users["held_before"] == users["held_after"] == {"use_mm", "audit_stores", "balance"}
    assert users["grab_rules"] == {"audit_stores", "balance"}
    assert users["null_store_rule"] == {"use_mm", "balance"}
    assert users["wrap"] == {"use_mm", "fix_use_mm"}
    # Each of these patterns stands in one source file only.
    for needle in (r"mmget_not_zero$at($E)", "mmu_interval_notifier_insert", "def shown(",
                   "def emit(", '"kind": "done"', "+ if (mmget_not_zero($M)) {"):
        holders = [n for n in _sources() if needle in _read(os.path.join(SRC, n))]
        assert len(holders) == 1, (needle, holders)


def test_list_names_each_fragment_and_its_rules():
    proc = subprocess.run([sys.executable, GEN, "--list"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = {l.split()[0]: l.split()[2:] for l in proc.stdout.splitlines()}
    assert rows["done_rule"] == ["arch_shortcuts.cocci", "audit_callers.cocci", "audit_sites.cocci",
                                 "audit_stores.cocci", "balance.cocci", "borrow_context.cocci"]
    assert rows["wrap"] == ["fix_use_mm.cocci", "use_mm.cocci"]


# --- the generator on bad sources -----------------------------------------------------

def _src(tmp_path, template, library="", helpers_py="def f():\n    return 1\n"):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.cocci.in").write_text(template)
    (src / "lib.cocci").write_text(library)
    (src / "helpers.py").write_text(helpers_py)
    return str(src)


@pytest.mark.parametrize("template, library, words", [
    ("{{generated}}\n{{nope}}\n", "", "no fragment nope"),
    ("{{generated}}\n{{frag}}\n", "//% frag(a)\n$a\n//% end\n", "needs a"),
    ("{{generated}}\n{{frag 1 2}}\n", "//% frag(a)\n$a\n//% end\n", "takes 1 arguments"),
    ("{{generated}}\n{{frag}}\n", "//% frag()\n$b\n//% end\n", "uses $b"),
    ("{{generated}}\n", "//% frag()\nx\n//% end\n", "fragments no rule uses: frag"),
    ("{{generated}}\nx {{frag}} y\n", "//% frag()\na\nb\n//% end\n", "several lines"),
    ("x\n", "", "{{generated}} must appear once"),
    ("{{generated}}\n{{python g}}\n", "", "helpers.py has no function g"),
    ("{{generated}}\n", "//% frag()\nx\n", "has no //% end"),
    ("{{generated}}\n{{frag}}\n", "//% frag()\n{{frag}}\n//% end\n", "nest deeper"),
])
def test_bad_sources_are_refused(tmp_path, template, library, words):
    with pytest.raises(gen.SourceError, match=re.escape(words)):
        gen.generate(_src(tmp_path, template, library))


def test_expansion_rules(tmp_path):
    library = ("//% line(a, b=B)\n$a ${b}c\n//% end\n"
               "//% block(first=)\n$first\nlast\n//% end\n"
               "//% names()\nx, y\n//% end\n")
    template = ("// head\n{{generated}}\n  {{block \"first=+ one\"}}\n{{block}}\n"
                "i {{line 1}} j {{line 2 b=Z}}\n{{alt names @p}}\n{{python f}}\n")
    rules, _ = gen.generate(_src(tmp_path, template, library))
    assert rules["x.cocci"] == (
        "// head\n// Generated from cocci/src/x.cocci.in, helpers.py, lib.cocci by "
        "scripts/gen-cocci: do not edit\n  + one\n  last\nlast\ni 1 Bc j 2 Zc\n"
        "\\(x@p\\|y@p\\)\ndef f():\n    return 1\n")


# --- the one shown() of every rule ---------------------------------------------------

@pytest.mark.parametrize("printed, written", [
    ("task_ref -> mm", "task_ref->mm"),
    ("snap [ i ] . mm", "snap[i].mm"),
    ("f ( & a , * b )", "f(&a, *b)"),
    ("& x -> y", "&x->y"),
    ("! list_empty ( & p -> l )", "!list_empty(&p->l)"),
    ("a && ! b", "a && !b"),
    ("a & b", "a & b"),
    ("a * b", "a * b"),
    ("a - b", "a - b"),
    ("a == - 1", "a == -1"),
    ("sizeof ( * bo -> mm )", "sizeof(*bo->mm)"),
    ("cond ? & a : b", "cond ? &a : b"),
    ("x -> y [ i + 1 ] -> z", "x->y[i + 1]->z"),
    ("kthread_use_mm ( get ( t ) )", "kthread_use_mm(get(t))"),
])
def test_shown(printed, written):
    assert helpers.shown(printed) == written
