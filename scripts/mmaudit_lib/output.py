"""Publish a set of outputs into a directory, whole or not at all.

The set is written into a fresh directory beside the target, with the
target's other entries hard-linked in, and the two directories are swapped
with one rename: a reader sees the old set or the new one, never a mix.
A manifest names the files mmaudit wrote, so that a later run replaces
those and keeps everything else."""

import ctypes
import errno
import os
import shutil
import signal
import stat
import tempfile

from . import UsageError

MANIFEST = ".mmaudit-outputs"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def check_directory(path, owned_only=False):
    """Fail early, before the expensive work, when PATH cannot take outputs.
    OWNED_ONLY: refuse a non-empty directory mmaudit did not write."""
    path = os.path.abspath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError("%s: exists and is not a directory" % path)
    if os.path.islink(path):
        raise UsageError("%s: is a symbolic link; give the directory itself" % path)
    parent = os.path.dirname(path)
    while not os.path.isdir(parent):
        if os.path.lexists(parent):
            raise UsageError("%s: exists and is not a directory" % parent)
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError("%s: cannot write there (permission denied or read-only)" % parent)
    if owned_only and os.path.isdir(path) and os.listdir(path) \
            and not os.path.isfile(os.path.join(path, MANIFEST)):
        raise UsageError("%s: not empty and not written by mmaudit; "
                         "remove it, choose another directory or pass --force" % path)


def owned(directory):
    """The names a previous run wrote into DIRECTORY."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
            return {n for n in f.read().split("\n") if n and "/" not in n and n not in (".", "..")}
    except (OSError, UnicodeDecodeError):
        return set()


def publish(directory, texts, replace_owned=True):
    """Make DIRECTORY hold TEXTS ({name: text}) in place of the files a
    previous run wrote there (all of them when REPLACE_OWNED, else only
    those named in TEXTS); other entries stay.  Returns the paths written."""
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    before = owned(directory) if os.path.isdir(directory) else set()
    drop = before if replace_owned else set()
    scratch = tempfile.mkdtemp(prefix=".%s.new-" % os.path.basename(directory), dir=parent)
    try:
        if os.path.isdir(directory):
            for name in sorted(os.listdir(directory)):
                if name not in texts and name not in drop and name != MANIFEST:
                    _link_copy(os.path.join(directory, name), os.path.join(scratch, name))
        mode = 0o666 & ~_umask()
        for name, text in sorted(texts.items()):
            _write(os.path.join(scratch, name), text, mode)
        keep = (before - drop) & set(os.listdir(scratch))
        _write(os.path.join(scratch, MANIFEST), "".join(
            n + "\n" for n in sorted(set(texts) | keep)), mode)
        os.chmod(scratch, 0o777 & ~_umask())
        _swap_in(scratch, directory)
    except OSError as err:
        shutil.rmtree(scratch, ignore_errors=True)
        raise UsageError("cannot write %s: %s" % (directory, err.strerror or err))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return [os.path.join(directory, n) for n in sorted(texts)]


def write_file(path, text):
    """One file, written whole or not at all, with the user's umask."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise UsageError("%s: is a directory" % path)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise UsageError("%s: no such directory" % directory)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        _unlink(tmp)
        raise UsageError("cannot write %s: %s" % (path, err.strerror or err))
    except BaseException:
        _unlink(tmp)
        raise


def _write(path, text, mode):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, mode)


def _link_copy(src, dst):
    """Hard links where possible: the old entry itself is never written."""
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst)
        for name in os.listdir(src):
            _link_copy(os.path.join(src, name), os.path.join(dst, name))
        shutil.copystat(src, dst)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    else:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _swap_in(new, target):
    """Put NEW where TARGET is, in one step, with signals held off so that
    the caller's "written" is true once this returns."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        if not os.path.isdir(target):
            os.rename(new, target)
            return
        if _exchange(new, target):
            shutil.rmtree(new, ignore_errors=True)     # NEW now holds the old set
            return
        aside = new + ".old"            # no RENAME_EXCHANGE here: two renames
        os.rename(target, aside)
        os.rename(new, target)
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _exchange(a, b):
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
