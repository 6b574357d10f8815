"""The balance check (cocci/balance.cocci, scripts/mmaudit_lib/balance.py).

- every fix mmaudit makes for a rule fixture (its .fix.expected diff),
  applied to the fixture, balances; so do the fixtures it leaves alone,
  except two whose own code is wrong on purpose;
- the published patches for Debian's 6.12 and 6.1 trees, applied to the
  trees' files, balance;
- each file of tests/fixtures/balance/ gives exactly the problems in its
  .expected: none for ok_*.c, the one mistake it is named for otherwise.

Run `python3 tests/test_balance.py --bless` to rewrite the .expected files
from the tool's output; review the change with `git diff tests/`."""

import concurrent.futures
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

import support
from mmaudit_lib import balance

BALANCE_FIXTURES = os.path.join(support.ROOT, "tests", "fixtures", "balance")
RELEASES = (("6.12", "6.12.117"), ("6.1", "6.1.192"))
# Rule fixtures whose own code mishandles mm_users on purpose (they test
# the audit); mmaudit fix leaves them alone.  The problem the check must see.
BUGGY_ORIGINALS = {
    "mmget_one_path_only": "kthread_use_mm(mm) at line 13 can run on a path from the start",
    "mmput_before_borrow": "kthread_use_mm(mm) at line 20 can run after mmput(mm) at line 16",
}
WORKERS = os.cpu_count() or 2


def balance_fixtures():
    return sorted(f[:-2] for f in os.listdir(BALANCE_FIXTURES) if f.endswith(".c"))


def show(problems):
    """The .expected form: one problem a line."""
    return "".join("%d: %s: %s\n" % (p["line"], "%s()" % p["function"] if p["function"] else "-",
                                      p["problem"]) for p in problems)


def fixture_output(name):
    with open(os.path.join(BALANCE_FIXTURES, name + ".c"), "rb") as f:
        return show(balance.check_text(f.read(), name=name + ".c"))


def fix_diffs(name):
    """The diffs in a rule fixture's .fix.expected (one per finding)."""
    with open(support.expected_path(name, "fix")) as f:
        parts = re.split(r"(?m)^\S+\.c:\d+ [\w-]+\n", f.read())
    return [p for p in parts if p.startswith("diff --git")]


def fixed_fixture_problems(name):
    with tempfile.TemporaryDirectory(prefix="mmaudit-test-balance-") as tmp:
        shutil.copy(os.path.join(support.RULE_FIXTURES, name + ".c"), tmp)
        for diff in fix_diffs(name):
            subprocess.run(["patch", "-p1", "--batch", "--silent", "-d", tmp],
                           input=diff.encode(), check=True)
        with open(os.path.join(tmp, name + ".c"), "rb") as f:
            return balance.check_text(f.read(), name=name + ".c")


def pmap(fn, items):
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(zip(items, pool.map(fn, items)))


@pytest.fixture(scope="module")
def fixed_fixtures():
    return pmap(fixed_fixture_problems, support.rule_fixtures())


@pytest.fixture(scope="module")
def fixture_outputs():
    return pmap(fixture_output, balance_fixtures())


# --- what mmaudit fix writes balances -------------------------------------------

def test_every_fix_diff_balances(fixed_fixtures):
    patched = [n for n in support.rule_fixtures() if fix_diffs(n)]
    assert len(patched) >= 10
    bad = {n: show(fixed_fixtures[n]) for n in patched if fixed_fixtures[n]}
    assert bad == {}


def test_unpatched_rule_fixtures_balance(fixed_fixtures):
    bad = {n: show(p) for n, p in fixed_fixtures.items()
           if p and not fix_diffs(n) and n not in BUGGY_ORIGINALS}
    assert bad == {}


@pytest.mark.parametrize("name", sorted(BUGGY_ORIGINALS))
def test_buggy_rule_fixtures_are_rejected(fixed_fixtures, name):
    assert not fix_diffs(name)
    assert any(BUGGY_ORIGINALS[name] in p["problem"] for p in fixed_fixtures[name]), \
        show(fixed_fixtures[name])


@pytest.mark.parametrize("series,version", RELEASES)
def test_published_patches_balance(series, version):
    tree = support.kernel_tree(series)
    patches = sorted(glob.glob(os.path.join(support.ROOT, "reports", "linux-%s" % version,
                                            "fixes", "*.patch")))
    assert len(patches) >= 4
    results = {}
    for path in patches:
        with open(path) as f:
            results[os.path.basename(path)] = balance.check_patch(tree, f.read())
    for name, files in results.items():
        assert len(files) == 1, (name, files)
    bad = {(name, rel): show(p) for name, files in results.items()
           for rel, p in files.items() if p}
    assert bad == {}


# --- deliberately wrong files are rejected ---------------------------------------

@pytest.mark.parametrize("name", balance_fixtures())
def test_balance_fixture_compiles(name):
    proc = subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Werror", "-I", support.INCLUDE,
                           os.path.join(BALANCE_FIXTURES, name + ".c")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", balance_fixtures())
def test_balance_fixture_output(fixture_outputs, name):
    with open(os.path.join(BALANCE_FIXTURES, name + ".expected")) as f:
        expected = f.read()
    assert fixture_outputs[name] == expected
    if name.startswith("ok_"):
        assert expected == ""
    else:
        assert expected, "%s must be rejected" % name


def test_at_least_the_planned_mistakes():
    wrong = {n for n in balance_fixtures() if not n.startswith("ok_")}
    assert {"missing_grab_drop_without_grab", "extra_drop_on_error_path",
            "grab_on_stack_object", "mmput_under_spinlock", "missing_mmput_on_early_return",
            "grab_leaked_on_error_path", "two_storing_functions_one_grab"} <= wrong


# --- failing closed ------------------------------------------------------------------

def test_a_run_that_does_not_finish_is_a_problem(monkeypatch):
    with open(os.path.join(BALANCE_FIXTURES, "ok_flag_guarded_put.c"), "rb") as f:
        text = f.read()
    got = balance.check_text(text, timeout=0.01)
    assert [p["problem"].startswith(balance.NOT_FINISHED) for p in got] == [True]
    # A rule that never prints the done fact proves nothing.
    monkeypatch.setattr(balance, "RULE", os.path.join(support.ROOT, "tests", "bench",
                                                       "trivial.cocci"))
    got = balance.check_text(text)
    assert [p["problem"].startswith(balance.NOT_FINISHED) for p in got] == [True]


def test_calls_spatch_cannot_parse_are_problems():
    text = ("struct mm_struct;\n"
            "int mmget_not_zero(struct mm_struct *mm);\n"
            "void mmput(struct mm_struct *mm);\n"
            "void f(struct mm_struct *mm)\n"
            "{\n"
            "\tint a = 1 +;\n"
            "\tif (mmget_not_zero(mm))\n"
            "\t\tmmput(mm);\n"
            "}\n")
    got = balance.check_text(text)
    assert [(p["line"], "is not covered" in p["problem"]) for p in got] == [(7, True), (8, True)]


def test_a_get_whose_branches_cannot_be_told_apart_is_a_problem():
    text = ("struct mm_struct;\n"
            "int mmget_not_zero(struct mm_struct *mm);\n"
            "void mmput(struct mm_struct *mm);\n"
            "void f(struct mm_struct *mm, int x)\n"
            "{\n"
            "\tif (mmget_not_zero(mm) || x)\n"
            "\t\tx++;\n"
            "\twhile (!mmget_not_zero(mm))\n"
            "\t\tx++;\n"
            "\tmmput(mm);\n"
            "}\n")
    got = [p for p in balance.check_text(text) if "check it by hand" in p["problem"]]
    assert [p["line"] for p in got] == [6, 8]


@pytest.mark.parametrize("cond,side", [
    ("mmget_not_zero(mm)", "then"),
    ("!mmget_not_zero(mm)", "else"),
    ("unlikely(!mmget_not_zero( mm ))", "else"),
    ("i < 16 && mmget_not_zero(mm)", "then"),
    ("!mm || !mmget_not_zero(mm)", "else"),
    ("(!mmget_not_zero(mm))", "else"),
    ("mmget_not_zero(mm) && i", None),
    ("mmget_not_zero(mm) || i", None),
    ("!(a && mmget_not_zero(mm))", None),
    ("a && b || mmget_not_zero(mm)", None),
    ("a || b && mmget_not_zero(mm)", None),
    ("a && (b || !mmget_not_zero(mm))", None),
    ("a || !mmget_not_zero(mm)", "else"),
])
def test_branch_of(cond, side):
    assert balance.branch_of(cond, "mm") == side


# --- patches -------------------------------------------------------------------------

def _digest(tree):
    h = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(tree)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            st = os.lstat(path)
            h.update(("%s %o %d\n" % (os.path.relpath(path, tree), st.st_mode, st.st_mtime_ns))
                     .encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


FIXTURE_PATCH = """From 0 Mon Sep 17 00:00:00 2001
Subject: [PATCH] test

---
diff --git a/drivers/foo/grab.c b/drivers/foo/grab.c
--- a/drivers/foo/grab.c
+++ b/drivers/foo/grab.c
@@ -%d,%d +%d,%d @@
%s
-- 
mmaudit 0.1.0
"""


def _tree_with(tmp, name):
    tree = os.path.join(tmp, "tree")
    os.makedirs(os.path.join(tree, "drivers", "foo"))
    shutil.copy(os.path.join(BALANCE_FIXTURES, name + ".c"),
                os.path.join(tree, "drivers", "foo", "grab.c"))
    with open(os.path.join(tree, "drivers", "foo", "other.c"), "w") as f:
        f.write("int other;\n")
    return tree


def _hunk(tree, old, new):
    """A one-hunk patch of drivers/foo/grab.c that turns line OLD into NEW."""
    with open(os.path.join(tree, "drivers", "foo", "grab.c")) as f:
        lines = f.read().split("\n")
    n = lines.index(old) + 1
    body = "\n".join([" " + lines[n - 2], "-" + old, "+" + new, " " + lines[n]])
    return FIXTURE_PATCH % (n - 1, 3, n - 1, 3, body)


def test_check_patch_reads_the_tree_only(tmp_path):
    tree = _tree_with(str(tmp_path), "grab_leaked_on_error_path")
    before = _digest(tree)
    # Drop before the kfree() on the error path: the patch fixes the leak.
    fixed = balance.check_patch(tree, _hunk(tree, "\t\tkfree(ctx);",
                                            "\t\tmmdrop(ctx->mm); kfree(ctx);"))
    assert fixed == {"drivers/foo/grab.c": []}
    # Dropping the grab instead makes release an underflow.
    broken = balance.check_patch(tree, _hunk(tree, "\tmmgrab(ctx->mm);", "\t;"))
    assert [p["line"] for p in broken["drivers/foo/grab.c"]] == [21]
    assert "without mmgrab()" in broken["drivers/foo/grab.c"][0]["problem"]
    assert _digest(tree) == before


def test_check_patch_that_does_not_apply(tmp_path):
    tree = _tree_with(str(tmp_path), "grab_leaked_on_error_path")
    before = _digest(tree)
    patch = _hunk(tree, "\t\tkfree(ctx);", "\t\tmmdrop(ctx->mm); kfree(ctx);")
    patch = patch.replace("-\t\tkfree(ctx);", "-\t\tkfree(ctx2);")
    got = balance.check_patch(tree, patch)
    assert list(got) == ["drivers/foo/grab.c"]
    assert got["drivers/foo/grab.c"][0]["problem"].startswith("the patch does not apply")
    assert _digest(tree) == before


@pytest.mark.parametrize("name", ["/etc/passwd", "b/../../x.c", "nodir"])
def test_check_patch_refuses_names_outside_the_tree(tmp_path, name):
    tree = _tree_with(str(tmp_path), "grab_leaked_on_error_path")
    patch = "--- a/x.c\n+++ %s\n@@ -1 +1 @@\n-a\n+b\n" % name
    got = balance.check_patch(tree, patch)
    assert [p["line"] for ps in got.values() for p in ps] == [0]


def bless():
    outputs = pmap(fixture_output, balance_fixtures())
    for name, text in outputs.items():
        with open(os.path.join(BALANCE_FIXTURES, name + ".expected"), "w") as f:
            f.write(text)
        print("%s: %d problem(s)" % (name, text.count("\n")))


if __name__ == "__main__":
    if sys.argv[1:] == ["--bless"]:
        bless()
    else:
        sys.exit("usage: %s --bless" % sys.argv[0])
