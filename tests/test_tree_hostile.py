"""Hostile and unlucky tarballs: the unpack cache (scripts/mmaudit_lib/tree.py).

These tests were run against the tree.py of commit d519b71 (before this
fix; with the rest of the work tree as it was) and all FAILED there except
two guards that pass before and after: test_benign_links_and_hard_links_unpack
(the checks let a kernel-like tarball with links through) and
test_only_entry_not_a_directory_is_refused[file].  What failed: one cache
entry shared by two tarballs of one name and size; rmtree() of the whole
cache for a tarball named `...tar.xz`, then a crash; absolute, `..`,
escaping-link and device members unpacked or called "corrupt"; a symlink as
the only entry audited in place of a tree; no size cap or free-space check;
ENOSPC called "corrupt"; tar (and its gzip) outliving a kill -9 of mmaudit,
its scratch directory never removed; no resolve_info(), release_name() or
tree_name(); `/` from EXTRAVERSION in kernel_version() and in report paths;
a read-only cache reported as a bare OSError (a traceback with the CLI of
d519b71).

Every test points XDG_CACHE_HOME at its own temporary directory.
"""

import collections
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

import support
from mmaudit_lib import UsageError, tree

BORROW = "struct c { struct mm_struct *mm; };\nvoid f(struct c *x) { kthread_use_mm(x->mm); }\n"
QUIET = "int g(void) { return 0; }\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    monkeypatch.delenv("MMAUDIT_MAX_UNPACK", raising=False)
    return path


def trees_of(cache):
    return cache / "mmaudit" / "trees"


def cli_env(cache, **extra):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    env.pop("MMAUDIT_MAX_UNPACK", None)
    env.update(extra)
    return env


def one_line_error(proc, words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmaudit: error: "), proc.stderr
    assert words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def member(name, kind=tarfile.REGTYPE, data=b"", linkname="", mode=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.mtime = 1700000000
    if kind == tarfile.REGTYPE:
        info.size = len(data)
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def make_tarball(path, members, mode="w:xz"):
    """A tarball at PATH of MEMBERS, each (TarInfo, data) from member()."""
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, data)
    return str(path)


def small_tree(top="linux", text=BORROW):
    return [member(top, tarfile.DIRTYPE), member(top + "/a.c", data=text.encode())]


def no_scratch_left(cache):
    trees = trees_of(cache)
    return not trees.exists() or not [e for e in os.listdir(trees) if e.startswith(".unpack-")]


# -- 1. the cache key and the cache name -------------------------------------

def test_same_name_and_size_different_content_get_their_own_trees(tmp_path, cache):
    paths = []
    for d, text in (("one", "int a(void) { return 1; }\n"), ("two", "int b(void) { return 2; }\n")):
        (tmp_path / d).mkdir()
        paths.append(make_tarball(tmp_path / d / "linux-source-9.1.tar",
                                  small_tree("linux-source-9.1", text), mode="w"))
        os.utime(paths[-1], (1700000000, 1700000000))
    assert os.path.getsize(paths[0]) == os.path.getsize(paths[1])
    one, two = tree.unpack(paths[0]), tree.unpack(paths[1])
    assert one != two
    assert open(os.path.join(one, "a.c")).read() == "int a(void) { return 1; }\n"
    assert open(os.path.join(two, "a.c")).read() == "int b(void) { return 2; }\n"
    for path, unpacked in zip(paths, (one, two)):
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
        assert os.path.basename(unpacked) == "linux-source-9.1-" + digest[:16]
        assert open(unpacked + ".unpacked").read().strip() == digest


def test_tree_names_are_safe():
    assert tree.tree_name("/x/...tar.xz") == "tree"
    assert tree.tree_name("/x/..tar.gz") == "tree"
    assert tree.tree_name("/x/.hidden.tar") == "hidden"
    assert tree.tree_name("/x/a b$c+d-1.2.tgz") == "a_b_c+d-1.2"
    assert tree.tree_name("/x/linux-source-6.12.tar.xz") == "linux-source-6.12"


def test_dots_tarball_name_does_not_remove_the_cache(tmp_path, cache):
    keep = cache / "mmaudit" / "facts" / "keep"
    keep.parent.mkdir(parents=True)
    keep.write_text("cached facts\n")
    tarball = make_tarball(tmp_path / "...tar.xz", small_tree(text=QUIET))
    proc = support.run_mmaudit("audit", "-q", "-j", "1", "--format", "json", tarball,
                               env=cli_env(cache))
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    assert keep.read_text() == "cached facts\n"
    names = os.listdir(trees_of(cache))
    assert [n for n in names if re.fullmatch(r"tree-[0-9a-f]{16}", n)], names
    assert json.loads(proc.stdout)["summary"]["sites"] == 0


# -- 2. members are checked before anything is extracted ------------------------

HOSTILE = {
    "absolute": ([member("linux", tarfile.DIRTYPE), member("/tmp/mmaudit-abs.c", data=b"x")],
                 "absolute path"),
    "dotdot": ([member("linux", tarfile.DIRTYPE), member("linux/../../evil.c", data=b"x")],
               "`..` component"),
    "symlink absolute": ([member("linux", tarfile.DIRTYPE),
                          member("linux/etc", tarfile.SYMTYPE, linkname="/etc")],
                         "symlink to an absolute path"),
    "symlink up": ([member("linux", tarfile.DIRTYPE),
                    member("linux/up", tarfile.SYMTYPE, linkname="../../..")],
                   "leaves the tree"),
    # linux/ alone becomes the tree: its sibling in the cache is outside
    "symlink beside the top": ([member("linux", tarfile.DIRTYPE),
                                member("linux/a.c", data=b"x"),
                                member("linux/next", tarfile.SYMTYPE, linkname="../other")],
                               "leaves the tree"),
    # Read as text, a/b/t -> s/../../.. ends at the top of the tree; but s is
    # a/b itself, so the kernel climbs one level more: out of the tree.
    "symlink through symlink": ([member("a", tarfile.DIRTYPE), member("a/b", tarfile.DIRTYPE),
                                 member("a/b/t", tarfile.SYMTYPE, linkname="s/../../.."),
                                 member("a/b/s", tarfile.SYMTYPE, linkname=".")],
                                "leaves the tree"),
    "member under symlink": ([member("linux", tarfile.DIRTYPE),
                              member("linux/d", tarfile.SYMTYPE, linkname="."),
                              member("linux/d/a.c", data=b"x")],
                             "lies under the symlink"),
    "hard link up": ([member("linux", tarfile.DIRTYPE),
                      member("linux/passwd", tarfile.LNKTYPE, linkname="../../etc/passwd")],
                     "hard link outside the tree"),
    "hard link absolute": ([member("linux", tarfile.DIRTYPE),
                            member("linux/passwd", tarfile.LNKTYPE, linkname="/etc/passwd")],
                           "hard link outside the tree"),
    "fifo": ([member("linux", tarfile.DIRTYPE), member("linux/fifo", tarfile.FIFOTYPE)],
             "not a regular file, directory or link"),
    "char device": ([member("linux", tarfile.DIRTYPE), member("linux/null", tarfile.CHRTYPE)],
                    "not a regular file, directory or link"),
    "block device": ([member("linux", tarfile.DIRTYPE), member("linux/sda", tarfile.BLKTYPE)],
                     "not a regular file, directory or link"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_refused_before_extraction(tmp_path, cache, case):
    members, words = HOSTILE[case]
    tarball = make_tarball(tmp_path / "linux-source-9.2.tar.xz", members)
    with pytest.raises(UsageError, match=words) as err:
        tree.unpack(tarball)
    assert "\n" not in str(err.value)
    trees = trees_of(cache)
    assert not trees.exists() or not [n for n in os.listdir(trees) if not n.endswith(".lock")]
    assert no_scratch_left(cache)
    assert not os.path.exists("/tmp/mmaudit-abs.c")


def test_only_entry_symlink_to_outside_directory_is_refused(tmp_path, cache):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.c").write_text(BORROW)
    tarball = make_tarball(tmp_path / "linux-source-9.3.tar.xz",
                           [member("linux", tarfile.SYMTYPE, linkname=str(outside))])
    proc = support.run_mmaudit("audit", "-q", "-j", "1", "--format", "json", tarball,
                               env=cli_env(cache))
    one_line_error(proc, "symlink")
    assert "secret.c" not in proc.stdout


@pytest.mark.parametrize("members", [
    # `linux -> .` stays inside, but renamed into the cache it would be the
    # cache directory itself.
    [member("linux", tarfile.SYMTYPE, linkname=".")],
    [member("linux", data=b"int x;\n")],
    [member(".", tarfile.DIRTYPE)],
], ids=["symlink to itself", "file", "dot"])
def test_only_entry_not_a_directory_is_refused(tmp_path, cache, members):
    tarball = make_tarball(tmp_path / "linux-source-9.4.tar.xz", members)
    with pytest.raises(UsageError, match="holds no directory"):
        tree.unpack(tarball)
    assert no_scratch_left(cache)


def test_after_extraction_the_top_must_be_a_real_directory(tmp_path, cache, monkeypatch):
    # The second line of defence, should tar see the archive otherwise than
    # Python's tarfile: here the pre-check is told to let everything pass.
    monkeypatch.setattr(tree, "_check_members", lambda tarball, members, limit: (
        [None for _ in members], tree._Scan())[1])
    tarball = make_tarball(tmp_path / "linux-source-9.4.tar.xz",
                           [member("linux", tarfile.SYMTYPE, linkname=".")])
    with pytest.raises(UsageError, match="holds no directory"):
        tree.unpack(tarball)
    tarball = make_tarball(tmp_path / "linux-source-9.5.tar.xz",
                           [member("linux", tarfile.DIRTYPE), member("linux/a.c", data=b"x"),
                            member("linux/next", tarfile.SYMTYPE, linkname="../other")])
    with pytest.raises(UsageError, match="next is a symlink that leaves the tree"):
        tree.unpack(tarball)
    assert no_scratch_left(cache)


def test_benign_links_and_hard_links_unpack(tmp_path, cache):
    tarball = make_tarball(tmp_path / "linux-source-9.5.tar.xz", [
        member("linux", tarfile.DIRTYPE),
        member("linux/arch", tarfile.DIRTYPE), member("linux/arch/dts", tarfile.DIRTYPE),
        member("linux/arch/dts/a.dtsi", data=b"/ { };\n"),
        member("linux/scripts", tarfile.DIRTYPE), member("linux/scripts/dtc", tarfile.DIRTYPE),
        member("linux/scripts/dtc/arm", tarfile.SYMTYPE, linkname="../../arch/dts"),
        member("linux/a.c", data=QUIET.encode()),
        member("linux/b.c", tarfile.LNKTYPE, linkname="linux/a.c"),
        member("linux/dangling", tarfile.SYMTYPE, linkname="nowhere/else"),
    ])
    unpacked = tree.unpack(tarball)
    assert open(os.path.join(unpacked, "scripts/dtc/arm/a.dtsi")).read() == "/ { };\n"
    assert os.path.samefile(os.path.join(unpacked, "a.c"), os.path.join(unpacked, "b.c"))
    assert tree.unpack(tarball) == unpacked


# -- 2, 3. size cap, free space, ENOSPC -----------------------------------------

def test_size_cap(tmp_path, cache):
    tarball = make_tarball(tmp_path / "linux-source-9.6.tar.xz",
                           [member("linux", tarfile.DIRTYPE),
                            member("linux/big.c", data=b"/* x */\n" * 20000)])
    proc = support.run_mmaudit("audit", "-q", tarball,
                               env=cli_env(cache, MMAUDIT_MAX_UNPACK="100000"))
    one_line_error(proc, "MMAUDIT_MAX_UNPACK limit of 100000 bytes")
    assert no_scratch_left(cache)
    proc = support.run_mmaudit("audit", "-q", tarball,
                               env=cli_env(cache, MMAUDIT_MAX_UNPACK="lots"))
    one_line_error(proc, "MMAUDIT_MAX_UNPACK=lots")


def test_free_space_checked_first(tmp_path, cache, monkeypatch):
    tarball = make_tarball(tmp_path / "linux-source-9.7.tar.xz", small_tree())
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    with pytest.raises(UsageError) as err:
        tree.unpack(tarball)
    assert "no space left on device" in str(err.value) and "corrupt" not in str(err.value)
    assert "1000 are free" in str(err.value)
    assert no_scratch_left(cache)


def test_enospc_from_tar_is_not_corrupt(tmp_path, cache, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tar"
    fake.write_text("#!/bin/sh\n"
                    "echo 'tar: linux/a.c: Cannot write: No space left on device' >&2\n"
                    "echo 'tar: Exiting with failure status due to previous errors' >&2\n"
                    "exit 2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, os.environ["PATH"]))
    tarball = make_tarball(tmp_path / "linux-source-9.8.tar.xz", small_tree())
    with pytest.raises(UsageError) as err:
        tree.unpack(tarball)
    assert "no space left on device" in str(err.value)
    assert "corrupt" not in str(err.value)
    assert no_scratch_left(cache)


# -- 4. kill -9 during the unpack ----------------------------------------------

def _proc_stat(pid):
    """(state, ppid, comm) of PID, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), comm


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st:
                children.setdefault(st[1], []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid):
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def test_kill_9_during_unpack_kills_tar_and_next_run_cleans_up(tmp_path, cache, monkeypatch):
    src = tmp_path / "src" / "linux-source-9.9"
    src.mkdir(parents=True)
    for i in range(60):
        (src / ("f%d.c" % i)).write_text(
            "/* %s */\nint f%d(void) { return %d; }\n" % (os.urandom(20000).hex(), i, i))
    tarball = str(tmp_path / "linux-source-9.9.tar.gz")
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        tar.add(src, arcname="linux-source-9.9")
    # A slow tar: the real one, sleeping a second every 20 records (200 KB).
    real_tar = shutil.which("tar")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tar").write_text('#!/bin/sh\nexec %s "$@" --checkpoint=20 '
                                 '--checkpoint-action=sleep=1\n' % real_tar)
    (bin_dir / "tar").chmod(0o755)
    env = cli_env(cache, PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    proc = subprocess.Popen([sys.executable, support.MMAUDIT, "audit", "-q", tarball], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trees = trees_of(cache)
    children = []
    try:
        deadline = time.time() + 60
        scratch = []
        while time.time() < deadline:
            if trees.exists():
                scratch = [trees / n for n in os.listdir(trees) if n.startswith(".unpack-")]
                if scratch and any(os.scandir(scratch[0])):
                    children = _descendants(proc.pid)
                    if children:
                        break
            assert proc.poll() is None, "mmaudit ended before it was killed"
            time.sleep(0.05)
        assert children and any(_proc_stat(c)[2] == "tar" for c in children if _proc_stat(c))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(c) for c in children):
            time.sleep(0.05)
        survivors = [c for c in children if _alive(c)]
        assert not survivors, "tar outlived mmaudit: %s" % [_proc_stat(c) for c in survivors]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in children:      # only what this test started, and only if the fix failed
            if _alive(c):
                os.kill(c, signal.SIGKILL)
    assert scratch and scratch[0].exists()      # kill -9 leaves it behind...
    unpacked = tree.unpack(tarball)             # ...and the next run removes it
    assert not scratch[0].exists() and no_scratch_left(cache)
    assert len(os.listdir(unpacked)) == 60


def test_stale_scratch_of_dead_process_removed_live_one_kept(tmp_path, cache):
    trees = trees_of(cache)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = trees / (".unpack-%d-abcdefgh" % dead.pid)
    live = trees / (".unpack-%d-ijklmnop" % os.getppid())
    for d in (stale, live):
        (d / "linux" / "sub").mkdir(parents=True)
        (d / "linux" / "sub" / "x.c").write_text("x\n")
    (stale / "linux" / "sub").chmod(0o555)      # as tar leaves a read-only directory
    tree.unpack(make_tarball(tmp_path / "linux-source-9.10.tar.xz", small_tree()))
    assert not stale.exists()
    assert live.exists()


# -- 5. resolve_info -----------------------------------------------------------

def test_resolve_info(tmp_path, cache):
    tarball = make_tarball(tmp_path / "linux-source-9.11.tar.xz", small_tree())
    info = tree.resolve_info(tarball)
    assert info.from_tarball and info.cached
    assert info.sha256 == hashlib.sha256(open(tarball, "rb").read()).hexdigest()
    assert info.tarball == os.path.abspath(tarball)
    assert tree.resolve(tarball) == (info.tree, "linux-source-9.11.tar.xz")
    plain = tmp_path / "plain"
    plain.mkdir()
    info = tree.resolve_info(str(plain))
    assert (info.tree, info.source, info.from_tarball, info.cached) == (
        str(plain), "plain", False, False)
    assert tree.resolve(str(plain)) == (str(plain), "plain")
    cached = tree.resolve_info(tree.unpack(tarball))    # the cached tree given as a directory
    assert cached.cached and not cached.from_tarball
    assert tree.is_cached_tree(cached.tree) and not tree.is_cached_tree(str(plain))


def test_resolve_hashes_once_per_call(tmp_path, cache, monkeypatch):
    """No memo across calls (no module state): every resolve(), resolve_info()
    and unpack() of a tarball reads it through sha256 exactly once, cold
    (unpacked in that call) or warm, and the one digest serves for the
    cache name, the marker and TreeInfo.sha256."""
    tarball = make_tarball(tmp_path / "linux-source-9.12.tar.xz", small_tree())
    calls = []
    real = tree._sha256_fd
    monkeypatch.setattr(tree, "_sha256_fd", lambda f: calls.append(1) or real(f))
    cold = tree.resolve_info(tarball)                   # unpacks
    assert len(calls) == 1
    digest = hashlib.sha256(open(tarball, "rb").read()).hexdigest()
    assert cold.sha256 == digest and cold.tree.endswith("-" + digest[:16])
    with open(cold.tree + ".unpacked") as m:
        assert m.read() == digest + "\n"
    assert tree.resolve(tarball) == (cold.tree, cold.source)
    assert len(calls) == 2
    assert tree.resolve_info(tarball) == cold
    assert len(calls) == 3
    assert tree.unpack(tarball) == cold.tree
    assert len(calls) == 4
    with open(tarball, "ab") as f:      # changed (xz allows zeros at the end): a new tree
        f.write(b"\0" * 10240)
    changed = tree.resolve_info(tarball)
    assert len(calls) == 5
    assert changed.sha256 == hashlib.sha256(open(tarball, "rb").read()).hexdigest()
    assert changed.tree != cold.tree


# -- 6. release names ------------------------------------------------------------

def test_release_name():
    assert tree.release_name("6.12.117") == "6.12.117"
    assert tree.release_name("6.1.0/../../../..") == "6.1.0_.._.._.._.."
    assert tree.release_name("..") == "unknown"
    assert tree.release_name("") == "unknown"
    assert tree.release_name(None) == "unknown"
    assert tree.release_name(".hidden") == "hidden"
    assert tree.release_name("6.1-rc1+ é x\n") == "6.1-rc1+___x_"
    assert len(tree.release_name("9" * 1000)) <= 100


def hostile_tree(path):
    path.mkdir()
    (path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n"
                                   "EXTRAVERSION = /../../../..\nNAME = x\n")
    (path / "a.c").write_text(QUIET)
    return path


def test_kernel_version_is_safe(tmp_path):
    version = tree.kernel_version(str(hostile_tree(tmp_path / "t")))
    assert version == "6.1.0_.._.._.._.."
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "Makefile").write_text("VERSION = ..\nPATCHLEVEL =\nSUBLEVEL =\n")
    assert "/" not in tree.kernel_version(str(tmp_path / "u"))


def test_hostile_extraversion_stays_in_release_dir(tmp_path, cache):
    src = hostile_tree(tmp_path / "t")
    reports = tmp_path / "a" / "b" / "c" / "reports"
    reports.mkdir(parents=True)
    proc = support.run_mmaudit("audit", "-q", "-j", "1", "--release-dir", str(reports), str(src),
                               env=cli_env(cache))
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    written = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs
               if f == "findings.json"]
    assert written and all(w.startswith(str(reports) + os.sep) for w in written), written


# -- 7. a read-only cache ----------------------------------------------------------

def test_read_only_cache_is_one_line(tmp_path, cache):
    tarball = make_tarball(tmp_path / "linux-source-9.13.tar.xz", small_tree())
    cmd = []
    if os.geteuid() == 0:   # root writes anywhere: drop the capability that allows it
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv cannot have a read-only directory")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
    (cache / "mmaudit").mkdir(parents=True)
    (cache / "mmaudit").chmod(0o555)
    try:
        proc = subprocess.run(cmd + [sys.executable, support.MMAUDIT, "audit", "-q", tarball],
                              env=cli_env(cache), capture_output=True, text=True)
    finally:
        (cache / "mmaudit").chmod(0o755)
    one_line_error(proc, "cannot write to the unpack cache")
    # A guard: once unpacked, a read-only cache still serves the tree.
    unpacked = tree.unpack(tarball)
    for d in (cache / "mmaudit", trees_of(cache)):
        d.chmod(0o555)
    try:
        proc = subprocess.run(cmd + [sys.executable, "-c", "import sys; sys.path.insert(0, %r); "
                                     "from mmaudit_lib import tree; print(tree.unpack(%r))"
                                     % (os.path.dirname(support.MMAUDIT), tarball)],
                              env=cli_env(cache), capture_output=True, text=True)
    finally:
        for d in (cache / "mmaudit", trees_of(cache)):
            d.chmod(0o755)
    assert proc.returncode == 0 and proc.stdout.strip() == unpacked, proc.stderr
