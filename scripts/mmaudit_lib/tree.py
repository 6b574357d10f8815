"""Find, unpack and describe the tree to audit.

A tarball is unpacked once into ${XDG_CACHE_HOME:-~/.cache}/mmaudit/trees/,
as <name>-<first 16 hex digits of its sha256>; <that>.unpacked records the
whole sha256 once the tree is complete.  Before anything is extracted, every
member of the tarball is checked: no absolute or `..` names, no link that
leaves the tree, nothing but files, directories and links, and no more than
MMAUDIT_MAX_UNPACK bytes (default 8 GiB) on disk, which must also be free.
"""

import bisect
import collections
import ctypes
import errno
import fcntl
import glob
import hashlib
import lzma
import os
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
import zlib

from . import UsageError

SOURCE_GLOB = "/usr/src/linux-source-*.tar.xz"
TARBALL_RE = re.compile(r"\.tar(\.(xz|gz|bz2|zst))?$|\.tgz$")
MAX_UNPACK_DEFAULT = 8 << 30
BLOCK = 4096            # what a file's data is rounded up to on disk
MEMBER_OVERHEAD = 512   # inode and directory entry, per member
SCRATCH_PREFIX = ".unpack-"
MAX_LINK_HOPS = 40      # as the kernel's ELOOP limit

TreeInfo = collections.namedtuple("TreeInfo", "tree source from_tarball cached tarball sha256")
TreeInfo.__doc__ = """What resolve_info() found.

tree: the directory to audit; source: what the user named (basename);
from_tarball: the tree was unpacked from a tarball into mmaudit's cache;
cached: the tree lives inside mmaudit's tree cache (from_tarball, or the
cache's directory given directly) and must not be modified;
tarball, sha256: the tarball's absolute path and content hash, or None."""


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mmaudit")


def trees_dir():
    return os.path.join(cache_dir(), "trees")


def _version_key(path):
    m = re.search(r"linux-source-([\d.]+)\.tar", os.path.basename(path))
    return tuple(int(x) for x in m.group(1).split(".") if x) if m else ()


def newest_source_package():
    tarballs = sorted(glob.glob(SOURCE_GLOB), key=_version_key)
    if not tarballs:
        raise UsageError("no PATH given and no %s on this machine; "
                         "install one with: apt-get install linux-source-6.12" % SOURCE_GLOB)
    return tarballs[-1]


# -- names ------------------------------------------------------------------

def _safe_name(text, default):
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", str(text or "")).lstrip(".")[:100]
    return name or default


def release_name(version_or_source):
    """VERSION_OR_SOURCE as one safe path component: only [A-Za-z0-9._+-]
    (anything else becomes `_`), no leading dot (so never `.` or `..`), at
    most 100 characters, never empty."""
    return _safe_name(version_or_source, "unknown")


def tree_name(tarball):
    """The cache name of TARBALL, without its hash: its basename less
    .tar.*, made safe."""
    base = re.sub(r"\.(tar(\.[A-Za-z0-9]+)?|tgz)$", "", os.path.basename(tarball))
    return _safe_name(base, "tree")


# -- hashing ----------------------------------------------------------------

def _sha256_fd(f):
    """sha256 of the open file F from its start, streamed."""
    h = hashlib.sha256()
    _rewind(f)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        n = f.readinto(buf)
        if not n:
            break
        h.update(view[:n])
    return h.hexdigest()


# -- the pre-extraction check -------------------------------------------------

def max_unpack():
    text = os.environ.get("MMAUDIT_MAX_UNPACK", "").strip()
    if not text:
        return MAX_UNPACK_DEFAULT
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise UsageError("MMAUDIT_MAX_UNPACK=%s: expected a positive number of bytes" % text)
    return value


def _parts(name):
    return [p for p in name.split("/") if p not in ("", ".")]


def _resolve_link(dir_parts, target, links, hops=0):
    """The components of TARGET, a link in the directory DIR_PARTS, once
    every link of the archive (LINKS: path -> target) on its way is
    followed; None if it leaves the tree or loops."""
    if target.startswith("/"):
        return None
    parts = list(dir_parts)
    for comp in target.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                return None
            parts.pop()
            continue
        path = "/".join(parts + [comp])
        if path in links:
            if hops >= MAX_LINK_HOPS:
                return None
            parts = _resolve_link(parts, links[path], links, hops + 1)
            if parts is None:
                return None
        else:
            parts.append(comp)
    return parts


class _Scan:
    """What the pre-check learnt: bytes on disk and member count."""

    def __init__(self):
        self.disk = 0
        self.members = 0
        self.compression = ""


def _check_members(tarball, members, limit):
    """Check every member of the archive (an iterator of TarInfo) before
    any is extracted; raise UsageError on the first refusal."""
    def refuse(name, why):
        raise UsageError("%s: refused to unpack: member %r %s" % (tarball, name[:200], why))

    scan = _Scan()
    links = {}          # symlink path -> target
    names = set()       # every member's normalised path
    dirs = set()        # the directories among them
    for m in members:
        name = m.name
        if name.startswith("/"):
            refuse(name, "has an absolute path")
        parts = _parts(name)
        if ".." in parts:
            refuse(name, "has a `..` component")
        path = "/".join(parts)
        if m.isreg():
            scan.disk += -(-m.size // BLOCK) * BLOCK
        elif m.isdir():
            scan.disk += BLOCK
            dirs.add(path)
        elif m.issym():
            if not path:
                refuse(name, "is a symlink in place of the top directory")
            if m.linkname.startswith("/"):
                refuse(name, "is a symlink to an absolute path (%s)" % m.linkname[:200])
            if path in names:
                refuse(name, "is a symlink that replaces another member")
            links[path] = m.linkname
        elif m.islnk():
            target = m.linkname
            if target.startswith("/") or ".." in _parts(target) or not _parts(target):
                refuse(name, "is a hard link outside the tree (%s)" % target[:200])
        else:
            refuse(name, "is not a regular file, directory or link (a device, FIFO "
                   "or unknown tar type %r)" % m.type)
        scan.members += 1
        scan.disk += MEMBER_OVERHEAD
        if scan.disk > limit:
            raise UsageError("%s: unpacks to more than the MMAUDIT_MAX_UNPACK limit of %d "
                             "bytes; set MMAUDIT_MAX_UNPACK (bytes) to allow it" % (tarball, limit))
        names.add(path)
    # With the whole archive known.  The tree is the one top directory if
    # there is only one (as in linux-source-*.tar.xz), else the whole.
    tops = {path.split("/", 1)[0] for path in names if path}
    root = []
    if len(tops) == 1:
        top = tops.pop()
        if top in links or not (top in dirs or any(p.startswith(top + "/") for p in names)):
            raise UsageError("%s: the tarball holds no directory (its only entry %r is a %s)"
                             % (tarball, top[:200], "symlink" if top in links else "file"))
        root = [top]
    elif not tops:
        raise UsageError("%s: the tarball holds no directory" % tarball)
    # Nothing is written through a link (a link is created where its name
    # says only if no directory on its way is itself a link), and every
    # link stays inside the tree once all the links it passes through are
    # followed.
    if links:
        ordered = sorted(names)
        for path in links:
            i = bisect.bisect_left(ordered, path + "/")
            if i < len(ordered) and ordered[i].startswith(path + "/"):
                refuse(ordered[i], "lies under the symlink %s" % path)
        for path, target in links.items():
            parts = _resolve_link(path.split("/")[:-1], target, links)
            if parts is None or parts[:len(root)] != root:
                refuse(path, "is a symlink that leaves the tree or loops (%s)" % target[:200])
    return scan


_MAGIC = ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b", "gz"), (b"BZh", "bz2"),
          (b"\x28\xb5\x2f\xfd", "zst"))


def _rewind(f):
    """Back to the start of F, an unbuffered file: so its fd, which tar
    and zstd inherit as their stdin, is at the start too."""
    f.seek(0)


def _compression(f):
    _rewind(f)
    head = f.read(8)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return ""


def _corrupt(tarball, why):
    why = (str(why).strip().splitlines() or ["unreadable"])[0]
    return UsageError("%s: corrupt or truncated tarball (%s)" % (tarball, why))


def _prescan(tarball, f, limit):
    kind = _compression(f)
    _rewind(f)
    if kind != "zst":
        try:
            with tarfile.open(fileobj=f, mode="r|*") as tf:
                scan = _check_members(tarball, tf, limit)
            scan.compression = kind
            return scan
        except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, ValueError) as err:
            raise _corrupt(tarball, str(err) or type(err).__name__)
        except OSError as err:
            raise _corrupt(tarball, err)
    # Python's tarfile reads no zstd: let zstd decompress for the check.
    try:
        proc = subprocess.Popen(["zstd", "-dc"], stdin=f, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=die_with_parent())
    except OSError:
        raise UsageError("%s: a zstd tarball needs zstd; apt-get install zstd" % tarball)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            scan = _check_members(tarball, tf, limit)
    except (tarfile.TarError, EOFError, ValueError, OSError) as err:
        proc.kill()
        proc.wait()
        raise _corrupt(tarball, proc.stderr.read().decode(errors="replace") or err)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.stdout.close()
    proc.kill()     # it may still be writing the archive's trailing blocks
    proc.wait()
    proc.stderr.close()
    scan.compression = kind
    return scan


# -- extraction ---------------------------------------------------------------

PR_SET_PDEATHSIG = 1


def die_with_parent():
    """A preexec_fn: the child gets SIGKILL when this process dies (even
    by SIGKILL), so no tar outlives an interrupted unpack."""
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def preexec():
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:      # the parent died before prctl
            os._exit(1)
    return preexec


def _tar_env():
    env = {k: v for k, v in os.environ.items() if k not in ("TAR_OPTIONS",)}
    env["LC_ALL"] = "C"
    return env


_NO_SPACE = ("No space left on device", "Disk quota exceeded")


def _no_space(tarball, where, detail):
    return UsageError("%s: no space left on device to unpack it into %s (%s)"
                      % (tarball, where, detail))


def _extract(tarball, f, kind, scratch):
    _rewind(f)
    flag = {"xz": ["-J"], "gz": ["-z"], "bz2": ["-j"], "zst": ["--zstd"]}.get(kind, [])
    cmd = ["tar", "-x"] + flag + ["-f", "-", "-C", scratch, "--no-same-owner",
                                  "--no-same-permissions", "--delay-directory-restore"]
    try:
        proc = subprocess.Popen(cmd, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=_tar_env(), preexec_fn=die_with_parent())
    except OSError as err:
        raise UsageError("cannot run tar: %s" % err)
    try:
        _, err = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        text = err.decode(errors="replace")
        first = (text.strip().splitlines() or ["tar failed"])[0]
        for line in text.splitlines():
            if any(s in line for s in _NO_SPACE):
                raise _no_space(tarball, os.path.dirname(scratch), line.strip())
        raise _corrupt(tarball, first)


def _verify_extracted(tarball, top):
    """After extraction: TOP is a real directory, and everything in it is a
    directory, regular file or symlink that stays inside TOP (a second
    line of defence, should tar and Python's tarfile disagree)."""
    st = os.lstat(top)
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError("%s: the tarball holds no directory (its top is %s)"
                         % (tarball, "a symlink" if stat.S_ISLNK(st.st_mode) else "a file"))
    real_top = os.path.realpath(top)
    stack = [top]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_symlink():
                    real = os.path.realpath(e.path)
                    if real != real_top and not real.startswith(real_top + os.sep):
                        raise UsageError("%s: refused to unpack: %s is a symlink that leaves "
                                         "the tree" % (tarball, os.path.relpath(e.path, top)))
                elif e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif not e.is_file(follow_symlinks=False):
                    raise UsageError("%s: refused to unpack: %s is not a regular file, "
                                     "directory or link" % (tarball, os.path.relpath(e.path, top)))


def _rmtree(path):
    """Remove PATH even where the tarball made a directory read-only."""
    def retry(func, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, ignore_errors=True)
            else:
                func(p)
        except OSError:
            pass
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=retry)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:     # EPERM: someone else's, alive
        return True
    return True


def clean_stale_scratch(trees=None):
    """Remove .unpack-<pid>-* scratch directories of processes that are
    gone (killed mid-unpack), and old ones from before pids were in the
    name. Return the names removed."""
    trees = trees or trees_dir()
    try:
        entries = os.listdir(trees)
    except OSError:
        return []
    removed = []
    for entry in entries:
        if not entry.startswith(SCRATCH_PREFIX):
            continue
        m = re.match(r"\.unpack-(\d+)-", entry)
        path = os.path.join(trees, entry)
        if m:
            pid = int(m.group(1))
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                stale = time.time() - os.lstat(path).st_mtime > 86400
            except OSError:
                stale = False
        if stale:
            _rmtree(path)
            removed.append(entry)
    return removed


def _unwritable(trees, err):
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return UsageError("no space left on device in the unpack cache %s (%s)"
                          % (trees, err.strerror))
    return UsageError("cannot write to the unpack cache %s (%s); set XDG_CACHE_HOME "
                      "to a writable directory" % (trees, err.strerror or err))


def _marker_ok(target, marker, digest):
    try:
        with open(marker) as m:
            recorded = m.read().strip()
        return recorded == digest and stat.S_ISDIR(os.lstat(target).st_mode)
    except OSError:
        return False


def _same_file(a, b):
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def unpack(tarball):
    """Unpack TARBALL once into the cache, after checking every member;
    return the tree's directory."""
    return _unpack(tarball)[0]


def _unpack(tarball):
    try:
        f = open(tarball, "rb", buffering=0)
    except OSError as err:
        raise UsageError("%s: cannot read (%s)" % (tarball, err.strerror or err))
    with f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UsageError("%s: not a regular file" % tarball)
        try:
            digest = _sha256_fd(f)    # once per call: passed down from here
        except OSError as err:
            raise UsageError("%s: cannot read (%s)" % (tarball, err.strerror or err))
        trees = trees_dir()
        target = os.path.join(trees, "%s-%s" % (tree_name(tarball), digest[:16]))
        marker = target + ".unpacked"
        clean_stale_scratch(trees)
        if _marker_ok(target, marker, digest):
            return target, digest
        try:
            os.makedirs(trees, exist_ok=True)
            lock = open(target + ".lock", "a")
        except OSError as err:
            raise _unwritable(trees, err)
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)   # one unpack of a tarball at a time
            if _marker_ok(target, marker, digest):
                return target, digest
            _unpack_locked(tarball, f, st, trees, target, marker, digest)
        return target, digest


def _unpack_locked(tarball, f, st, trees, target, marker, digest):
    limit = max_unpack()
    scan = _prescan(tarball, f, limit)
    free = shutil.disk_usage(trees).free
    if scan.disk > free:
        raise _no_space(tarball, trees, "it needs about %d bytes, %d are free"
                        % (scan.disk, free))
    try:
        scratch = tempfile.mkdtemp(prefix="%s%d-" % (SCRATCH_PREFIX, os.getpid()), dir=trees)
    except OSError as err:
        raise _unwritable(trees, err)
    try:
        _extract(tarball, f, scan.compression, scratch)
        if not _same_file(st, os.fstat(f.fileno())):
            raise UsageError("%s: changed while it was being unpacked" % tarball)
        entries = os.listdir(scratch)
        top = os.path.join(scratch, entries[0]) if len(entries) == 1 else scratch
        _verify_extracted(tarball, top)
        try:
            _rmtree(target)
            os.rename(top, target)
            tmp = "%s.tmp-%d" % (marker, os.getpid())
            with open(tmp, "w") as m:
                m.write(digest + "\n")
            os.replace(tmp, marker)
        except OSError as err:
            raise _unwritable(trees, err)
    finally:
        _rmtree(scratch)


# -- what to audit ------------------------------------------------------------

def _in_cache(tree):
    trees = os.path.realpath(trees_dir())
    real = os.path.realpath(tree)
    return real.startswith(trees + os.sep)


def resolve_info(path):
    """Resolve PATH (None: the newest /usr/src/linux-source-*.tar.xz) to a
    TreeInfo(tree, source, from_tarball, cached, tarball, sha256)."""
    if path is None:
        path = newest_source_package()
    if not os.path.exists(path):
        raise UsageError("%s: no such file or directory" % path)
    if os.path.isdir(path):
        tree = os.path.abspath(path)
        return TreeInfo(tree, os.path.basename(tree), False, _in_cache(tree), None, None)
    if TARBALL_RE.search(path):
        tree, digest = _unpack(path)
        return TreeInfo(tree, os.path.basename(path), True, True, os.path.abspath(path), digest)
    raise UsageError("%s: not a directory or a .tar.* kernel source tarball" % path)


def resolve(path):
    """Return (tree directory, description of the source) for PATH."""
    info = resolve_info(path)
    return info.tree, info.source


def is_cached_tree(path):
    """True if PATH lies in mmaudit's cache of unpacked tarballs."""
    return _in_cache(path)


def kernel_version(tree):
    """VERSION.PATCHLEVEL.SUBLEVEL[EXTRAVERSION] from the top Makefile, made
    safe for a path component (release_name()), or None."""
    try:
        with open(os.path.join(tree, "Makefile"), errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)[ \t]*=[ \t]*(\S*)",
                             head, re.M))
    if not fields.get("VERSION"):
        return None
    version = "%s.%s.%s" % (fields["VERSION"], fields.get("PATCHLEVEL", "0"),
                            fields.get("SUBLEVEL", "0"))
    return release_name(version + fields.get("EXTRAVERSION", ""))
