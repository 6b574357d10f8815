"""mmaudit audit --base REV and mmaudit check PATCH: what a change brings.

The history is built over copies of real 6.12 files (drivers/vdpa's
simulator, whose worker pins with mmget_not_zero()) and the audit fixture
whose owner is pinned by its only store, in another file."""

import json
import os
import shutil
import subprocess

import pytest

import support

VDPA = "drivers/vdpa/vdpa_sim/vdpa_sim.c"
PIN = "\t\tif (!mmget_not_zero(mm))\n\t\t\treturn;\n"
PUT = "\t\tkthread_unuse_mm(mm);\n\t\tmmput(mm);\n"
BARE_STORE = """#include "ctx.h"

void ctx_adopt(struct ctx *c, struct mm_struct *mm)
{
	c->mm = mm;
}
"""


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.org"]
                          + list(args), cwd=repo, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A repository: commit 1 all pinned; commit 2 removes the vdpa
    simulator's pin and adds a bare store to struct ctx.mm in a new file."""
    repo = str(tmp_path_factory.mktemp("history") / "repo")
    os.makedirs(os.path.join(repo, os.path.dirname(VDPA)))
    shutil.copy(os.path.join(support.kernel_tree("6.12"), VDPA), os.path.join(repo, VDPA))
    shutil.copytree(os.path.join(support.AUDIT_FIXTURES, "field_pinned_in_other_file"),
                    os.path.join(repo, "ctx"), ignore=shutil.ignore_patterns("expected*"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "pinned")
    with open(os.path.join(repo, VDPA)) as f:
        text = f.read()
    assert PIN in text and PUT in text
    with open(os.path.join(repo, VDPA), "w") as f:
        f.write(text.replace(PIN, "").replace(PUT, "\t\tkthread_unuse_mm(mm);\n"))
    with open(os.path.join(repo, "ctx", "adopt.c"), "w") as f:
        f.write(BARE_STORE)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "unpin")
    return repo


def changes(proc):
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "mmaudit-changes/1"
    return [(c["change"], c["file"], c["function"], c["before"], c["after"],
             sorted("%s:%d" % (b["file"], b["line"]) for b in c["because"]))
            for c in doc["changes"] if c["counts"]]


EXPECTED = [
    ("verdict changed", "ctx/worker.c", "ctx_worker", "pinned", "review", ["ctx/adopt.c:5"]),
    ("verdict changed", VDPA, "vdpasim_work_fn", "pinned", "unreferenced", []),
]


def test_base_reports_exactly_the_two_changes(history):
    proc = support.run_mmaudit("audit", "--base", "HEAD~1", "-q", "-j", "2", "--no-risk",
                               "--format", "json", history)
    assert changes(proc) == EXPECTED
    assert proc.returncode == 1


def test_base_text_names_the_store_that_did_it(history):
    proc = support.run_mmaudit("audit", "--base", "HEAD~1", "-q", "--no-risk", history)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and len(lines) == 2, proc.stdout
    assert lines[0].startswith("ctx/worker.c:") and "pinned -> review" in lines[0]
    assert "because of ctx/adopt.c:5" in lines[0]
    assert lines[1].startswith(VDPA + ":") and "pinned -> unreferenced" in lines[1]


def test_base_against_head_is_clean(history):
    proc = support.run_mmaudit("audit", "--base", "HEAD", "-q", "--no-risk", history)
    assert (proc.returncode, proc.stdout) == (0, "no new or changed finding\n"), proc.stderr


def test_base_sarif_holds_the_changes_only(history, tmp_path):
    proc = support.run_mmaudit("audit", "--base", "HEAD~1", "-q", "--no-risk",
                               "--format", "sarif", history)
    assert proc.returncode == 1
    sarif = json.loads(proc.stdout)
    where = sorted(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                   for r in sarif["runs"][0]["results"])
    assert where == ["ctx/worker.c", VDPA]
    path = tmp_path / "changes.sarif"
    path.write_text(proc.stdout)
    check = subprocess.run([os.path.join(support.ROOT, "scripts", "sarif-validate"), str(path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_check_of_the_series_gives_the_same(history, tmp_path):
    series = tmp_path / "series.mbox"
    series.write_text(git(history, "format-patch", "-1", "HEAD", "--stdout"))
    before = tmp_path / "before"
    git(history, "worktree", "add", "-q", "--detach", str(before), "HEAD~1")
    try:
        proc = support.run_mmaudit("check", str(series), "--tree", str(before), "-q",
                                   "--no-risk", "--format", "json")
        assert changes(proc) == EXPECTED
        assert proc.returncode == 1
        assert git(str(before), "status", "--porcelain") == ""     # never written
    finally:
        git(history, "worktree", "remove", "--force", str(before))


def test_check_names_the_patch_and_hunk_that_does_not_apply(history, tmp_path):
    series = tmp_path / "0001-unpin.patch"
    series.write_text(git(history, "format-patch", "-1", "HEAD", "--stdout", "--", VDPA))
    before = tmp_path / "before"
    git(history, "worktree", "add", "-q", "--detach", str(before), "HEAD~1")
    try:
        path = before / VDPA        # the lines the patch removes, changed meanwhile
        path.write_text(path.read_text().replace(PIN, PIN.replace("return;", "return ;")))
        proc = support.run_mmaudit("check", str(series), "--tree", str(before), "-q",
                                   "--no-risk")
        assert proc.returncode == 2
        err = proc.stderr.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith("mmaudit: error: 0001-unpin.patch does not apply: " + VDPA)
        assert "Hunk #1 FAILED" in err, err
    finally:
        git(history, "worktree", "remove", "--force", str(before))


def test_check_of_a_file_that_is_no_patch(tmp_path):
    (tmp_path / "a.c").write_text("int a;\n")
    junk = tmp_path / "notes.txt"
    junk.write_text("no diff here\n")
    proc = support.run_mmaudit("check", str(junk), "--tree", str(tmp_path), "-q")
    assert proc.returncode == 2 and "holds no diff" in proc.stderr, proc.stderr
    proc = support.run_mmaudit("check", str(tmp_path / "missing.patch"), "--tree",
                               str(tmp_path), "-q")
    assert proc.returncode == 2 and "no such patch file" in proc.stderr, proc.stderr


def test_git_and_walk_give_the_same_bytes(history):
    outs = [support.run_mmaudit("audit", "-q", "--no-risk", "--format", "json", *extra, history)
            for extra in ([], ["--walk"], ["--no-cache"])]
    assert all(o.returncode == 1 for o in outs), [o.stderr for o in outs]
    assert outs[0].stdout == outs[1].stdout == outs[2].stdout


def test_an_index_without_the_c_files_falls_back_and_says_so(tmp_path):
    """Debian's linux-source tree ignores every top-level path: `git add -A`
    adds nothing, and git's record would hold no file at all."""
    repo = tmp_path / "repo"
    shutil.copytree(os.path.join(support.AUDIT_FIXTURES, "field_pinned_in_other_file"),
                    str(repo), ignore=shutil.ignore_patterns("expected*"))
    (repo / ".gitignore").write_text("/*\n!/.gitignore\n")
    git(str(repo), "init", "-q")
    git(str(repo), "add", "-A")
    git(str(repo), "commit", "-qm", "only .gitignore")
    proc = support.run_mmaudit("audit", "--no-risk", "--format", "json", str(repo))
    assert proc.returncode == 0, proc.stderr
    assert "holds none of its C files; searching the tree itself" in proc.stderr
    assert json.loads(proc.stdout)["summary"]["pinned"] == 1


def test_base_outside_git_is_an_error(tmp_path):
    (tmp_path / "a.c").write_text("int a;\n")
    proc = support.run_mmaudit("audit", "--base", "HEAD", "-q", str(tmp_path))
    assert proc.returncode == 2 and "not in a git work tree" in proc.stderr


def test_base_unknown_revision_is_an_error(history):
    proc = support.run_mmaudit("audit", "--base", "no-such-rev", "-q", history)
    assert proc.returncode == 2 and "no-such-rev: no such git revision" in proc.stderr


ESCAPE = """--- a/../outside.c
+++ b/../outside.c
@@ -0,0 +1 @@
+int escaped;
"""
THROUGH_LINK = """--- /dev/null
+++ b/link/new.c
@@ -0,0 +1 @@
+int through_link;
"""


@pytest.mark.parametrize("patch, why", [(ESCAPE, "unsafe file name ../outside.c"),
                                        (THROUGH_LINK, "link is a symbolic link")])
def test_check_never_writes_outside_its_copy(tmp_path, patch, why):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.c").write_text("int a;\n")
    (tmp_path / "elsewhere").mkdir()
    (tree / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "p.patch").write_text(patch)
    proc = support.run_mmaudit("check", str(tmp_path / "p.patch"), "--tree", str(tree), "-q")
    assert proc.returncode == 2 and why in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "p.patch", "tree"]
    assert os.listdir(tmp_path / "elsewhere") == []


def test_check_leaves_a_tree_it_copies_as_it_was(history, tmp_path):
    """The copy is made of hard links: the patched files get inodes of their own."""
    before = tmp_path / "before"
    git(history, "worktree", "add", "-q", "--detach", str(before), "HEAD~1")
    try:
        series = tmp_path / "s.patch"
        series.write_text(git(history, "format-patch", "-1", "HEAD", "--stdout"))
        text = (before / VDPA).read_bytes()
        proc = support.run_mmaudit("check", str(series), "--tree", str(before), "-q",
                                   "--no-risk")
        assert proc.returncode == 1, proc.stderr
        assert (before / VDPA).read_bytes() == text
        assert not (before / "ctx" / "adopt.c").exists()
    finally:
        git(history, "worktree", "remove", "--force", str(before))


def test_check_of_a_patch_in_another_encoding(tmp_path):
    """FAILED-BEFORE (found by the fuzz): patch(1) echoed a latin-1 line and
    its output was read as UTF-8: an internal error."""
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(support.AUDIT_FIXTURES, "field_pinned_in_other_file"), tree)
    bad = (b"--- a/setup.c\n+++ b/setup.c\n@@ -5,\xd6 +5,5 @@\n int ctx_setup(struct ctx *c)\n"
           b"-\tc->mm = get_task_mm(current);\n+\tc->mm = current->mm; /* caf\xe9 */\n")
    (tmp_path / "latin1.patch").write_bytes(bad)
    proc = support.run_mmaudit("check", str(tmp_path / "latin1.patch"), "--tree", str(tree),
                               "-q", "--no-risk")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "latin1.patch" in proc.stderr
    assert "internal error" not in proc.stderr


def test_base_of_a_tarball_says_what_it_needs():
    proc = support.run_mmaudit("audit", "--base", "HEAD", "-q", "/usr/src/linux-source-6.12.tar.xz")
    assert proc.returncode == 2
    assert "not a directory; --base needs a directory in a git work tree" in proc.stderr
