"""Candidate files from git's index (gitsel) against a walk of the tree
(scan.Walk): every case must give the same files and the same count."""

import json
import os
import subprocess

import pytest

import support
from mmaudit_lib import gitsel, scan

BORROW = "void f(struct mm_struct *mm)\n{\n\tkthread_use_mm(mm);\n}\n"
PLAIN = "int plain;\n"


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.org",
                           "-c", "protocol.file.allow=always"] + list(args),
                          cwd=str(repo), check=True, capture_output=True, text=True).stdout


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as f:
        f.write(text)


@pytest.fixture(autouse=True, params=["names", "walk"])
def how_files_are_read(request, monkeypatch):
    """Every test twice: files named to grep, and a walk of the tree (what
    a first run of a large tree does)."""
    if request.param == "walk":
        monkeypatch.setattr(gitsel, "WALK_MIN", 0)
        monkeypatch.setattr(gitsel, "WALK_FRACTION", 10 ** 9)
    return request.param


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    write(r / "a" / "borrow.c", BORROW)
    write(r / "a" / "plain.c", PLAIN)
    write(r / "b" / "header.h", BORROW)
    write(r / "README", "not C\n")
    git(r, "init", "-q")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "one")
    return r


def both(tree, cache_dir, pattern=scan.BORROW_RE):
    """(git's answer, the walk's answer), each (files searched, sorted files)."""
    select = gitsel.open_tree(str(tree), 2, str(cache_dir))
    assert isinstance(select, gitsel.GitSelection), select.note
    got = select.counted(pattern, set())
    walk = scan.Walk(str(tree), 2).counted(pattern, set())
    return (got[0], sorted(got[1])), (walk[0], sorted(walk[1]))


def test_clean_tree(repo, tmp_path):
    got, walk = both(repo, tmp_path / "cache")
    assert got == walk == (3, ["a/borrow.c", "b/header.h"])


def test_edits_deletions_and_new_files_are_read(repo, tmp_path):
    cache = tmp_path / "cache"
    both(repo, cache)                               # fills the record
    write(repo / "a" / "plain.c", BORROW)           # now borrows, not committed
    write(repo / "a" / "borrow.c", PLAIN)           # no longer does
    os.unlink(str(repo / "b" / "header.h"))         # deleted
    write(repo / "c" / "untracked.c", BORROW)
    write(repo / "build" / "gen.c", BORROW)
    write(repo / ".gitignore", "/build/\n")         # ignored, but a walk sees it
    got, walk = both(repo, cache)
    assert got == walk == (4, ["a/plain.c", "build/gen.c", "c/untracked.c"])


def test_a_staged_change_is_read(repo, tmp_path):
    cache = tmp_path / "cache"
    both(repo, cache)
    write(repo / "a" / "plain.c", BORROW)
    git(repo, "add", "a/plain.c")
    got, walk = both(repo, cache)
    assert got == walk == (3, ["a/borrow.c", "a/plain.c", "b/header.h"])


def test_links_and_fifos_are_left_as_a_walk_leaves_them(repo, tmp_path):
    os.symlink("borrow.c", str(repo / "a" / "link.c"))
    git(repo, "add", "a/link.c")
    git(repo, "commit", "-qm", "tracked link")
    os.symlink("../a/borrow.c", str(repo / "b" / "untracked-link.c"))
    os.mkfifo(str(repo / "b" / "fifo.c"))
    got, walk = both(repo, tmp_path / "cache")
    assert got == walk == (3, ["a/borrow.c", "b/header.h"])


def test_a_subdirectory_of_the_work_tree(repo, tmp_path):
    got, walk = both(repo / "a", tmp_path / "cache")
    assert got == walk == (2, ["borrow.c"])


def test_a_damaged_record_is_not_believed(repo, tmp_path):
    cache = tmp_path / "cache"
    both(repo, cache)
    records = list((cache / "grep").iterdir())
    assert len(records) == 1
    entry = json.loads(records[0].read_text())
    entry["match"] = ""                             # claims nothing matches
    entry["seen"] = entry["seen"][:-1]              # and is cut short
    records[0].write_text(json.dumps(entry))
    got, walk = both(repo, cache)
    assert got == walk == (3, ["a/borrow.c", "b/header.h"])


def test_a_wrong_record_is_not_used_for_another_blob(repo, tmp_path):
    """The record is per blob id: another content is never answered from it."""
    cache = tmp_path / "cache"
    both(repo, cache)
    write(repo / "a" / "plain.c", "/* kthread_use_mm */\n" + BORROW)
    git(repo, "commit", "-qam", "two")
    got, walk = both(repo, cache)
    assert got == walk == (3, ["a/borrow.c", "a/plain.c", "b/header.h"])


def test_no_c_files_in_the_index_falls_back(tmp_path):
    r = tmp_path / "repo"
    write(r / "x.c", BORROW)
    write(r / ".gitignore", "/*\n!/.gitignore\n")
    git(r, "init", "-q")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "one")
    select = gitsel.open_tree(str(r), 1, None)
    assert isinstance(select, scan.Walk) and "holds none of its C files" in select.note


def test_a_nested_repository_falls_back(repo):
    inner = repo / "vendor"
    write(inner / "v.c", BORROW)
    git(inner, "init", "-q")
    select = gitsel.open_tree(str(repo), 1, None)
    assert isinstance(select, scan.Walk) and "another git repository" in select.note


def test_a_submodule_falls_back(repo, tmp_path):
    sub = tmp_path / "sub"
    write(sub / "s.c", BORROW)
    git(sub, "init", "-q")
    git(sub, "add", "-A")
    git(sub, "commit", "-qm", "sub")
    git(repo, "submodule", "add", "-q", str(sub), "ext")
    select = gitsel.open_tree(str(repo), 1, None)
    assert isinstance(select, scan.Walk) and "submodule" in select.note


def test_not_a_work_tree_is_a_plain_walk(tmp_path):
    write(tmp_path / "x.c", BORROW)
    select = gitsel.open_tree(str(tmp_path), 1, None)
    assert isinstance(select, scan.Walk) and select.note is None


def test_the_audit_writes_nothing_into_the_repository(repo, tmp_path):
    """No index refresh, no lock, no object: .git is as it was."""
    write(repo / "a" / "plain.c", BORROW)           # a change git must look at
    os.utime(str(repo / "a" / "borrow.c"))          # and a file only touched

    def state():
        out = {}
        for d, _, files in os.walk(str(repo / ".git")):
            for name in files:
                st = os.lstat(os.path.join(d, name))
                out[os.path.join(d, name)] = (st.st_size, st.st_mtime_ns)
        return out
    was = state()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    for args in (["audit", "-q", "--no-risk", str(repo)],
                 ["audit", "-q", "--no-risk", "--base", "HEAD", str(repo)]):
        proc = support.run_mmaudit(*args, env=env)
        assert proc.returncode == 1, proc.stderr
    assert state() == was
