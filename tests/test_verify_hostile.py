"""`mmaudit fix --verify` and --apply against trees that must not change.

verify: the scratch copy's sources are hard links to the real tree, so
nothing may write a file of the copy in place. Run against the old
verify.py (a `cp -al` copy configured and built in place),
test_verify_leaves_a_configured_tree_alone FAILED: all four patches
verified, but 738 files of the real tree changed, the 143254-byte x86
.config among them (now a 10393-byte ppc64le one), arch/x86/kernel/
asm-offsets.s, drivers/dma/idxd/.cdev.o.cmd and every include/config/*
timestamp. It passes since verify builds with make O= in a directory of
its own, after `make mrproper` unlinked the copy's build outputs.

apply: apply.apply_series() is all or nothing, also when interrupted.
"""

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

import support

sys.path.insert(0, os.path.join(support.ROOT, "scripts"))
from mmaudit_lib import UsageError, apply, verify  # noqa: E402


def snapshot(root):
    """Every name under ROOT; for files their sha256, size, mtime and mode,
    for symlinks their target, for directories their mtime."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mtime_ns)
            else:
                with open(path, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
                out[rel] = ("file", digest, st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def differences(before, after):
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    return {"gone": sorted(before.keys() - after.keys()),
            "new": sorted(after.keys() - before.keys()), "changed": changed}


def assert_same(before, after):
    diff = differences(before, after)
    assert diff == {"gone": [], "new": [], "changed": []}, \
        {k: (len(v), v[:20]) for k, v in diff.items()}


# --- verify on a configured, built kernel tree -------------------------------------------

def _make(tree, *args):
    proc = subprocess.run(list(args), cwd=tree, capture_output=True, text=True)
    assert proc.returncode == 0, (args, proc.stderr[-2000:])


def test_verify_leaves_a_configured_tree_alone(tmp_path):
    tree = str(tmp_path / "linux")
    subprocess.run(["cp", "-a", support.kernel_tree("6.12"), tree], check=True)
    _make(tree, "make", "-s", "x86_64_defconfig")
    _make(tree, "scripts/config", "-e", "DMADEVICES", "-e", "PCI_MSI", "-e", "INTEL_IDXD")
    _make(tree, "make", "-s", "olddefconfig")
    _make(tree, "make", "-s", "-j2", "prepare")
    _make(tree, "make", "-s", "-j2", "drivers/dma/idxd/cdev.o")
    before = snapshot(tree)
    assert ".config" in before and "drivers/dma/idxd/cdev.o" in before
    assert "tools/objtool/objtool" in before
    proc = support.run_mmaudit("fix", "-q", "--verify", "--signoff", support.FIX_SIGNOFF,
                               "-o", str(tmp_path / "out"), tree)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert_same(before, snapshot(tree))
    assert proc.stdout.count(": verified") == 4 and "FAILED" not in proc.stdout, \
        proc.stdout + proc.stderr

    # A file that does not build before the patch: "baseline does not
    # build", not FAILED.
    cdev = os.path.join(tree, "drivers/dma/idxd/cdev.c")
    with open(cdev) as f:
        original = f.read()
    broken = original.replace("static int idxd_cdev_open(struct inode *inode, struct file *filp)\n{",
                              "static int idxd_cdev_open(struct inode *inode, struct file *filp)\n{"
                              "\n\tmmaudit_no_such_function();", 1)
    assert broken != original
    os.unlink(cdev)         # never write through a link
    with open(cdev, "w") as f:
        f.write(broken)
    proc = support.run_mmaudit("fix", "-q", "--verify", "--signoff", support.FIX_SIGNOFF,
                               "-o", str(tmp_path / "out"), tree)
    assert "0003-cdev-idxd-copy-cr.patch: baseline does not build" in proc.stdout, \
        proc.stdout + proc.stderr
    assert proc.stdout.count(": verified") == 3 and proc.returncode == 1
    os.unlink(cdev)
    with open(cdev, "w") as f:
        f.write(original)
    os.utime(cdev, ns=(before["drivers/dma/idxd/cdev.c"][3],) * 2)

    # --apply changes exactly the files the patches name.
    before = snapshot(tree)
    proc = support.run_mmaudit("fix", "-q", "--apply", "--signoff", support.FIX_SIGNOFF,
                               "-o", str(tmp_path / "out"), tree)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    named = set()
    for name in os.listdir(tmp_path / "out"):
        if name.endswith(".patch"):
            with open(tmp_path / "out" / name) as f:
                named |= set(re.findall(r"^\+\+\+ b/(\S+)", f.read(), re.M))
    assert len(named) == 4, named        # else the comparison below holds for nothing
    diff = differences(before, snapshot(tree))
    assert diff["gone"] == [] and diff["new"] == []
    assert set(diff["changed"]) - {os.path.dirname(n) for n in named} == named


SOURCE = "".join("line %d\n" % i for i in range(1, 4)) + "two\n" \
    + "".join("line %d\n" % i for i in range(5, 30)) + "end\n"


def _diff(tree, rel, new, old=None):
    """A -p1 unified diff of REL in TREE to NEW (from OLD, default the file)."""
    path = os.path.join(str(tree), rel)
    if old is None:
        old = open(path).read() if os.path.exists(path) else None
    a = os.path.join(str(tree), ".old")
    b = os.path.join(str(tree), ".new")
    try:
        if old is not None:
            with open(a, "w") as f:
                f.write(old)
        with open(b, "w") as f:
            f.write(new)
        proc = subprocess.run(["diff", "-u", "--label", "a/" + rel if old is not None
                               else "/dev/null", "--label", "b/" + rel,
                               a if old is not None else "/dev/null", b],
                              capture_output=True, text=True)
    finally:
        for p in (a, b):
            if os.path.exists(p):
                os.unlink(p)
    assert proc.returncode == 1, proc.stderr
    return proc.stdout


def _mbox(*diffs):
    """DIFFS as `git format-patch` lays them out."""
    return "From: x\nSubject: [PATCH] x\n\n---\n 1 file changed\n\n%s-- \n2.39.5\n" \
        % "".join(diffs)



def test_verify_writes_no_file_of_a_small_tree(tmp_path):
    """No kbuild here (mrproper fails, the build is reported as not done),
    but patching, checkpatch's absence and the restore must still leave
    the tree alone, and the scratch file a patch wrote had its own inode."""
    tree = tmp_path / "tree"
    (tree / "drivers").mkdir(parents=True)
    (tree / "drivers" / "a.c").write_text(SOURCE)
    os.link(tree / "drivers" / "a.c", tmp_path / "elsewhere.c")
    patch = tmp_path / "0001.patch"
    patch.write_text(_mbox(_diff(tree, "drivers/a.c", SOURCE.replace("two", "TWO"))))
    before = snapshot(tree)
    seen = {}

    def reaudit(scratch):
        seen["text"] = open(os.path.join(scratch, "drivers", "a.c")).read()
        return {"sites": [{"file": "drivers/a.c", "function": "f", "verdict": "pinned"}]}

    site = {"file": "drivers/a.c", "line": 2, "function": "f"}
    [r] = verify.verify(str(tree), [(site, str(patch))], reaudit)
    assert r["applies"] and r["refused_twice"] and r["reaudit"] == "pinned"
    assert "TWO" in seen["text"]
    assert r["build"]["drivers/a.c"]["ok"] is None
    assert_same(before, snapshot(tree))
    assert (tmp_path / "elsewhere.c").read_text() == SOURCE


# --- apply_series on small trees ---------------------------------------------------------

@pytest.fixture
def small_tree(tmp_path):
    tree = tmp_path / "tree"
    (tree / "lib").mkdir(parents=True)
    for name in ("lib/a.c", "lib/b.c", "lib/c.c"):
        (tree / name).write_text(SOURCE.replace("two", "two in " + name))
    os.chmod(tree / "lib" / "b.c", 0o600)
    old = time.time() - 86400
    for name in ("lib/a.c", "lib/b.c", "lib/c.c", "lib"):
        os.utime(tree / name, (old, old))
    return tree


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _series(tmp_path, tree):
    """0001 changes a.c and creates new/d.c, 0002 changes b.c and a.c again
    (elsewhere), 0003 changes c.c."""
    a = (tree / "lib" / "a.c").read_text()
    p1 = _mbox(_diff(tree, "lib/a.c", a.replace("line 2\n", "line 2 patched\n")),
               _diff(tree, "new/sub/d.c", "int d;\n"))
    p2 = _mbox(_diff(tree, "lib/b.c", (tree / "lib" / "b.c").read_text().replace("line 20\n", "x\n")),
               _diff(tree, "lib/a.c", a.replace("line 25\n", "line 25 patched\n")))
    p3 = _mbox(_diff(tree, "lib/c.c", (tree / "lib" / "c.c").read_text().replace("end\n", "END\n")))
    return [_write(tmp_path, "000%d.patch" % (i + 1), p) for i, p in enumerate((p1, p2, p3))]


def _no_leftovers(tree):
    names = [n for _, _, files in os.walk(tree) for n in files]
    assert not [n for n in names if n.endswith((".rej", ".orig"))], names


def test_apply_all(small_tree, tmp_path):
    before = snapshot(small_tree)
    changed = apply.apply_series(str(small_tree), _series(tmp_path, small_tree))
    assert changed == ["lib/a.c", "new/sub/d.c", "lib/b.c", "lib/c.c"]
    a = (small_tree / "lib" / "a.c").read_text()
    assert "line 2 patched\n" in a and "line 25 patched\n" in a
    assert (small_tree / "new" / "sub" / "d.c").read_text() == "int d;\n"
    assert "x\n" in (small_tree / "lib" / "b.c").read_text()
    assert stat.S_IMODE(os.stat(small_tree / "lib" / "b.c").st_mode) == 0o600
    diff = differences(before, snapshot(small_tree))
    assert diff["gone"] == []
    assert diff["new"] == ["new", "new/sub", "new/sub/d.c"]
    # Only the files the series names changed (and lib/, whose entries did).
    assert diff["changed"] == ["lib", "lib/a.c", "lib/b.c", "lib/c.c"]
    _no_leftovers(small_tree)


def test_apply_refuses_a_conflicting_series_before_writing(small_tree, tmp_path, monkeypatch):
    a = (small_tree / "lib" / "a.c").read_text()
    p1 = _write(tmp_path, "0001-first.patch",
                _mbox(_diff(small_tree, "lib/a.c", a.replace("two in lib/a.c", "TWO"))))
    p0 = _write(tmp_path, "0000-b.patch",
                _mbox(_diff(small_tree, "lib/b.c", (small_tree / "lib/b.c").read_text() + "more\n")))
    # Made against the original tree: it conflicts once 0001 is in.
    p2 = _write(tmp_path, "0002-second.patch",
                _mbox(_diff(small_tree, "lib/a.c", a.replace("two in lib/a.c", "zwei"))))
    before = snapshot(small_tree)
    real_run = apply.subprocess.run
    cwds = []
    monkeypatch.setattr(apply.subprocess, "run",
                        lambda cmd, cwd=None, **kw: cwds.append(cwd) or real_run(cmd, cwd=cwd, **kw))
    with pytest.raises(UsageError) as err:
        apply.apply_series(str(small_tree), [p0, p1, p2])
    assert str(err.value) == "0002-second.patch does not apply: lib/a.c: Hunk #1 FAILED at 1."
    assert len(cwds) == 3 and str(small_tree) not in cwds     # the dry run refused it
    assert_same(before, snapshot(small_tree))
    _no_leftovers(small_tree)


@pytest.mark.parametrize("case, why", [
    ("applied", "0001.patch does not apply: lib/a.c: Reversed (or previously applied) patch "
                "detected!  Skipping patch."),
    ("missing", "0001.patch does not apply: lib/zz.c: no such file"),
    ("unsafe", "0001.patch does not apply: unsafe file name ../outside.c"),
    ("symlink", "0001.patch does not apply: lnk is a symbolic link"),
])
def test_apply_refusals(small_tree, tmp_path, case, why):
    a = (small_tree / "lib" / "a.c").read_text()
    text = _mbox(_diff(small_tree, "lib/a.c", a.replace("line 2\n", "line 2 patched\n")))
    if case == "applied":
        (small_tree / "lib" / "a.c").write_text(a.replace("line 2\n", "line 2 patched\n"))
    elif case == "missing":
        text = text.replace("lib/a.c", "lib/zz.c")
    elif case == "unsafe":
        text = text.replace("a/lib/a.c", "a/../outside.c").replace("b/lib/a.c", "b/../outside.c")
    else:   # a directory of the tree that is a link to elsewhere
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "a.c").write_text(a)
        os.symlink(tmp_path / "elsewhere", small_tree / "lnk")
        text = text.replace("lib/a.c", "lnk/a.c")
    path = _write(tmp_path, "0001.patch", text)
    before = snapshot(small_tree)
    with pytest.raises(UsageError) as err:
        apply.apply_series(str(small_tree), [path])
    assert str(err.value) == why
    assert_same(before, snapshot(small_tree))
    assert not (tmp_path / "outside.c").exists()
    if case == "symlink":
        assert (tmp_path / "elsewhere" / "a.c").read_text() == a


@pytest.mark.parametrize("when", ["before", "after"])
def test_apply_interrupted_restores_the_tree(small_tree, tmp_path, monkeypatch, when):
    """KeyboardInterrupt on the second real `patch` call, before it runs or
    once it has written its file."""
    patches = _series(tmp_path, small_tree)
    before = snapshot(small_tree)
    real_run = apply.subprocess.run
    calls = []

    def run(cmd, cwd=None, **kw):
        if cwd == str(small_tree):
            calls.append(cmd)
            if len(calls) == 2:
                if when == "after":
                    real_run(cmd, cwd=cwd, **kw)
                raise KeyboardInterrupt
        return real_run(cmd, cwd=cwd, **kw)

    monkeypatch.setattr(apply.subprocess, "run", run)
    with pytest.raises(KeyboardInterrupt):
        apply.apply_series(str(small_tree), patches)
    assert len(calls) == 2
    assert_same(before, snapshot(small_tree))
    _no_leftovers(small_tree)


def test_apply_sigterm_during_patch_restores_the_tree(small_tree, tmp_path):
    """As the CLI runs it (SIGTERM raises KeyboardInterrupt): patch(1) on
    the tree's second patch writes b.c, leaves a temporary file beside it,
    and hangs until killed; SIGTERM then restores everything."""
    patches = _series(tmp_path, small_tree)
    before = snapshot(small_tree)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "hanging"
    fake = bin_dir / "patch"
    fake.write_text(textwrap.dedent("""\
        #!/bin/sh
        if [ "$(pwd -P)" = "%s" ]; then
            case "$*" in
            *0002.patch*)
                /usr/bin/patch "$@" || exit 1
                echo half > lib/b.c.XyZ123
                touch "%s"
                exec sleep 60 ;;
            esac
        fi
        exec /usr/bin/patch "$@"
        """ % (os.path.realpath(small_tree), marker)))
    fake.chmod(0o755)
    driver = textwrap.dedent("""\
        import signal, sys
        sys.path.insert(0, %r)
        from mmaudit_lib import apply

        def terminate(signum, frame):
            raise KeyboardInterrupt(signum)

        signal.signal(signal.SIGTERM, terminate)
        try:
            apply.apply_series(sys.argv[1], sys.argv[2:])
        except KeyboardInterrupt:
            sys.exit(143)
        """ % os.path.join(support.ROOT, "scripts"))
    env = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    proc = subprocess.Popen([sys.executable, "-c", driver, str(small_tree)] + patches, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate()
        assert "x\n" in (small_tree / "lib" / "b.c").read_text()     # half applied
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert_same(before, snapshot(small_tree))
    _no_leftovers(small_tree)
