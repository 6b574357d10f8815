"""Hostile input, interruption and the audited tree left untouched."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

import support

BORROW = "struct c { struct mm_struct *mm; };\nvoid f(struct c *x) { kthread_use_mm(x->mm); }\n"


def _clean_run(proc, codes=(0, 1)):
    assert proc.returncode in codes, proc.stderr
    assert "Traceback" not in proc.stderr


def tree_digest(root):
    """Names, modes and contents of every file under ROOT (symlinks not followed)."""
    h = hashlib.sha256()
    for top, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(top, d))]):
            path = os.path.join(top, name)
            st = os.lstat(path)
            h.update(os.fsencode(path) + b"\0%o\0" % st.st_mode)
            if os.path.islink(path):
                h.update(os.fsencode(os.readlink(path)))
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def test_empty_directory(tmp_path):
    proc = support.run_mmaudit("audit", str(tmp_path))
    assert proc.returncode == 2 and "no C files" in proc.stderr


def test_non_kernel_tree_is_audited_without_a_version(tmp_path):
    (tmp_path / "a.c").write_text(BORROW)
    proc = support.run_mmaudit("audit", "-q", "--format", "json", str(tmp_path))
    _clean_run(proc)
    data = json.loads(proc.stdout)
    assert data["tree"]["version"] is None and data["summary"]["sites"] == 1


def test_truncated_tarball(tmp_path):
    src = tmp_path / "linux-source-9.8"
    src.mkdir()
    for i in range(200):
        (src / ("f%d.c" % i)).write_bytes(os.urandom(2000).hex().encode())
    tarball = tmp_path / "linux-source-9.8.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(src, arcname="linux-source-9.8")
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) // 2])
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = support.run_mmaudit("audit", str(tarball), env=env)
    assert proc.returncode == 2 and "corrupt or truncated" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache" / "mmaudit" / "trees" / "linux-source-9.8").exists()


def test_unreadable_files_and_symlink_loops(open_tmp):
    """Root reads everything, so as root the audit runs as nobody."""
    tmp_path = open_tmp
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok.c").write_text(BORROW)
    (tree / "dangling.c").symlink_to("nowhere.c")
    (tree / "loop").symlink_to("..")
    os.mkfifo(tree / "fifo.c")
    locked = tree / "locked.c"
    locked.write_text(BORROW)
    (tree / "closed").mkdir()
    (tree / "closed" / "in.c").write_text(BORROW)
    locked.chmod(0)
    (tree / "closed").chmod(0)
    mmaudit = support.MMAUDIT
    if os.geteuid() == 0:   # nobody may not reach the checkout: use a copy
        for part in ("scripts", "cocci"):
            shutil.copytree(os.path.join(support.ROOT, part), tmp_path / "project" / part)
        mmaudit = str(tmp_path / "project" / "scripts" / "mmaudit")
    cmd = [sys.executable, mmaudit, "audit", "-q", "--format", "json", str(tree)]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"] + cmd
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    (tree / "closed").chmod(0o755)
    _clean_run(proc)
    data = json.loads(proc.stdout)
    assert [s["file"] for s in data["sites"]] == ["ok.c"]
    # grep -r does not follow symlinks: the dangling one and the loop are skipped.
    assert data["stats"]["files_unreadable"] == ["closed", "locked.c"]
    assert "could not read closed, locked.c" in proc.stderr


def test_names_with_spaces_and_non_utf8_bytes(tmp_path):
    (tmp_path / "my file.c").write_text(BORROW)
    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff.c"), "w") as f:
        f.write(BORROW)
    proc = support.run_mmaudit("audit", "-q", "--format", "json", str(tmp_path))
    _clean_run(proc)
    sites = {s["file"]: s for s in json.loads(proc.stdout)["sites"]}
    assert sites["my file.c"]["verdict"] == "review"
    assert sites["bad\\xff.c"]["verdict"] == "unanalyzed"
    assert "not UTF-8" in sites["bad\\xff.c"]["reason"]


def test_50mb_file_times_out_and_the_run_goes_on(tmp_path):
    with open(tmp_path / "huge.c", "w") as f:
        n = 0
        while f.tell() < 50 * 1024 * 1024:
            f.write("int fn%d(int a) { int b = a * %d; if (b > 3) b -= a; return b; }\n" % (n, n))
            n += 1
        f.write(BORROW)
    (tmp_path / "small.c").write_text(BORROW.replace("f(", "g("))
    proc = support.run_mmaudit("audit", "-q", "--timeout", "5", "--format", "json", str(tmp_path))
    _clean_run(proc)
    sites = {s["file"]: s for s in json.loads(proc.stdout)["sites"]}
    assert sites["huge.c"]["verdict"] == "unanalyzed"
    assert sites["huge.c"]["reason"] == "spatch timed out after 5 s"
    assert sites["small.c"]["verdict"] == "review"


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_leaves_no_report(tmp_path, sig, code):
    tree = support.kernel_tree("6.12")
    out = tmp_path / "out"
    # --no-cache: a run from cached facts could end before the signal.
    proc = subprocess.Popen([sys.executable, support.MMAUDIT, "audit", "-q", "-j", "1",
                             "--no-cache", "-o", str(out), tree], stderr=subprocess.PIPE,
                            text=True)
    time.sleep(2.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert not out.exists() or not [n for n in os.listdir(out) if n.startswith(("findings", "REPORT", ".tmp"))]
    again = support.run_mmaudit("audit", "-q", "-o", str(out), tree)
    assert again.returncode == 1
    assert sorted(os.listdir(out)) == [".mmaudit-outputs", "REPORT.md", "findings.json", "findings.sarif"]


def test_read_only_tree_is_left_byte_for_byte(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(support.AUDIT_FIXTURES, "field_mixed_stores_review"), tree)
    for top, dirs, files in os.walk(tree):
        for name in files + dirs:
            os.chmod(os.path.join(top, name), 0o555 if name in dirs else 0o444)
    os.chmod(tree, 0o555)
    before = tree_digest(tree)
    proc = support.run_mmaudit("audit", "-q", "-o", str(tmp_path / "out"), str(tree))
    _clean_run(proc)
    assert tree_digest(tree) == before
    os.chmod(tree, 0o755)


def test_real_tree_is_left_byte_for_byte():
    tree = support.kernel_tree("6.12")
    before = tree_digest(tree)
    _clean_run(support.run_mmaudit("audit", "-q", "-j", "2", tree))
    assert tree_digest(tree) == before


def test_two_shards_give_the_same_bytes(tmp_path):
    tree = support.kernel_tree("6.12")
    single = support.run_mmaudit("audit", "-q", "--format", "json", tree)
    _clean_run(single)
    assert json.loads(single.stdout)["summary"]["sites"] == 17     # not two empty outputs
    parts = []
    for i in (1, 2):
        path = tmp_path / ("s%d.json" % i)
        shard = support.run_mmaudit("audit", "-q", "--shard", "%d/2" % i, "--format", "json", tree)
        _clean_run(shard)
        path.write_text(shard.stdout)
        parts.append(str(path))
    merged = support.run_mmaudit("merge", "-q", "--format", "json", *parts)
    _clean_run(merged, codes=(1,))
    assert merged.stdout == single.stdout


def test_cached_facts_follow_the_file_name(tmp_path):
    """Two files with the same content, audited from two trees."""
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / (name + ".c")).write_text(BORROW)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    first = support.run_mmaudit("audit", "-q", str(tmp_path / "one"), env=env)
    second = support.run_mmaudit("audit", "-q", str(tmp_path / "two"), env=env)
    _clean_run(first)
    _clean_run(second)
    assert "one.c:2:" in first.stdout and "one.c" not in second.stdout
    assert second.stdout == first.stdout.replace("one.c", "two.c")


def test_fact_cache_gives_the_same_bytes_and_sees_a_change(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(support.AUDIT_FIXTURES, "field_grab_only_in_other_file"), tree)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    run = lambda *a: support.run_mmaudit("audit", "-q", "--format", "json", str(tree), *a, env=env)  # noqa: E731
    cold = run().stdout
    assert json.loads(cold)["sites"][0]["verdict"] == "grab-only"      # so "pinned" is a change
    assert os.listdir(tmp_path / "cache" / "mmaudit" / "facts")
    assert run().stdout == cold == run("--no-cache").stdout
    create = tree / "create.c"
    create.write_text(create.read_text().replace("current->mm;", "get_task_mm(current);")
                      .replace("\tmmgrab(current->mm);\n", ""))
    assert json.loads(run().stdout)["sites"][0]["verdict"] == "pinned"


def _spatch_for_version_only(tmp_path):
    """A spatch that answers --version and fails anything else: an audit
    that runs it on a file stops with an error."""
    wrapper = tmp_path / "bin" / "spatch"
    wrapper.parent.mkdir()
    wrapper.write_text('#!/bin/sh\n[ "$1" = --version ] && exec %s "$@"\n'
                       'echo "spatch must not run" >&2; exit 3\n' % shutil.which("spatch"))
    wrapper.chmod(0o755)
    return str(wrapper)


def test_facts_are_cached_by_code_not_comments(tmp_path):
    """Issue 16: an edit of comments or trailing blanks, or lines appended
    after the code, costs no spatch run; a code edit does."""
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(support.AUDIT_FIXTURES, "field_grab_only_in_other_file"), tree)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    run = lambda **kw: support.run_mmaudit("audit", "-q", "--format", "json", str(tree),  # noqa: E731
                                           env=dict(env, **kw))
    cold = run().stdout
    assert json.loads(cold)["sites"][0]["verdict"] == "grab-only"
    no_spatch = _spatch_for_version_only(tmp_path)
    create = tree / "create.c"
    text = create.read_text()
    lines = text.split("\n")
    lines[1] += "   /* a comment on the line */  \t"
    create.write_text("\n".join(lines) + "\n/* appended */\n\n")
    assert run(SPATCH=no_spatch).stdout == cold
    create.write_text(text.replace("\n", "\r\n"))      # CRLF, as a Windows editor saves
    assert run(SPATCH=no_spatch).stdout == cold
    create.write_text("/* one line more */\n" + text)   # every line moves: facts must too
    moved = run(SPATCH=no_spatch)
    assert moved.returncode == 2 and "spatch" in moved.stderr
    create.write_text(text.replace('"', "'") + "static int x;\n")
    assert run(SPATCH=no_spatch).returncode == 2
