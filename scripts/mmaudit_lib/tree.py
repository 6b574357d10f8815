"""Find, unpack and describe the tree to audit."""

import glob
import os
import re
import shutil
import subprocess
import tempfile

from . import UsageError

SOURCE_GLOB = "/usr/src/linux-source-*.tar.xz"


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mmaudit")


def _version_key(path):
    m = re.search(r"linux-source-([\d.]+)\.tar", os.path.basename(path))
    return tuple(int(x) for x in m.group(1).split(".") if x) if m else ()


def newest_source_package():
    tarballs = sorted(glob.glob(SOURCE_GLOB), key=_version_key)
    if not tarballs:
        raise UsageError("no PATH given and no %s on this machine; "
                         "install one with: apt-get install linux-source-6.12" % SOURCE_GLOB)
    return tarballs[-1]


def unpack(tarball):
    """Unpack a tarball once into the cache; return the tree's directory."""
    stamp = os.stat(tarball)
    name = re.sub(r"\.tar(\.\w+)?$", "", os.path.basename(tarball))
    trees = os.path.join(cache_dir(), "trees")
    target = os.path.join(trees, name)
    marker = target + ".unpacked"
    wanted = "%d %d\n" % (stamp.st_size, int(stamp.st_mtime))
    if os.path.isdir(target) and os.path.exists(marker) and open(marker).read() == wanted:
        return target
    os.makedirs(trees, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".unpack-", dir=trees)
    try:
        proc = subprocess.run(["tar", "-xf", os.path.abspath(tarball), "-C", scratch],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["tar failed"])[0]
            raise UsageError("%s: corrupt or truncated tarball (%s)" % (tarball, first))
        entries = os.listdir(scratch)
        top = os.path.join(scratch, entries[0]) if len(entries) == 1 else scratch
        if not os.path.isdir(top):
            raise UsageError("%s: the tarball holds no directory" % tarball)
        shutil.rmtree(target, ignore_errors=True)
        os.rename(top, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with open(marker, "w") as f:
        f.write(wanted)
    return target


def resolve(path):
    """Return (tree directory, description of the source) for PATH."""
    if path is None:
        path = newest_source_package()
    if not os.path.exists(path):
        raise UsageError("%s: no such file or directory" % path)
    if os.path.isdir(path):
        return os.path.abspath(path), os.path.basename(os.path.abspath(path))
    if re.search(r"\.tar(\.(xz|gz|bz2|zst))?$|\.tgz$", path):
        return unpack(path), os.path.basename(path)
    raise UsageError("%s: not a directory or a .tar.* kernel source tarball" % path)


def kernel_version(tree):
    """VERSION.PATCHLEVEL.SUBLEVEL from the top Makefile, or None."""
    try:
        with open(os.path.join(tree, "Makefile"), errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=[ \t]*(\S*)",
                             head, re.M))
    if not fields.get("VERSION"):
        return None
    version = "%s.%s.%s" % (fields["VERSION"], fields.get("PATCHLEVEL", "0"),
                            fields.get("SUBLEVEL", "0"))
    return version + fields.get("EXTRAVERSION", "")
