"""Apply a series of patches to a tree all or nothing.

The whole series is first applied, in order, to copies of the files it
touches in a scratch directory; a patch that fails there stops everything
before the tree is written. Then each touched file is backed up (bytes,
mode, mtime) and the series is applied for real. On any failure, and on
KeyboardInterrupt (the CLI turns SIGTERM into one), every backed-up file is
put back and the files the series created are removed, with SIGINT and
SIGTERM blocked so that the restore itself runs to the end."""

import os
import re
import shutil
import signal
import subprocess
import tempfile

from . import UsageError

# -t: never ask (a missing file is skipped, not prompted for); with -N a
# reversed or already applied patch is refused instead of assumed -R.
# --no-backup-if-mismatch and -r -: no .orig and no .rej, ever.
PATCH = ["patch", "-p1", "-N", "-t", "--no-backup-if-mismatch", "-r", "-"]

_HEADER = re.compile(r"^--- (\S+)[^\n]*\n\+\+\+ (\S+)", re.M)
_GIT_NAME = re.compile(r"^(?:rename|copy) (?:from|to) (.+)$", re.M)


def _strip1(name):
    if name == "/dev/null":
        return None
    name = name.split("\t")[0]
    return name.split("/", 1)[1] if "/" in name else name


def touched_files(text):
    """The files (relative to the tree, as patch -p1 sees them) that the
    unified diffs in TEXT read, write, create or delete, in order."""
    names = []
    for old, new in _HEADER.findall(text):
        names += [_strip1(old), _strip1(new)]
    names += _GIT_NAME.findall(text)
    out = []
    for name in names:
        if name and name not in out:
            out.append(name)
    return out


def check_name(tree, patch, rel):
    parts = rel.split("/")
    if os.path.isabs(rel) or ".." in parts or not rel or "" in parts:
        raise UsageError("%s does not apply: unsafe file name %s" % (patch, rel))
    for i in range(1, len(parts) + 1):     # nothing written outside the tree
        if os.path.islink(os.path.join(tree, *parts[:i])):
            raise UsageError("%s does not apply: %s is a symbolic link"
                             % (patch, "/".join(parts[:i])))


def unshare(scratch, rel):
    """Give the scratch copy of REL an inode of its own before anything
    writes it (GNU patch renames a new file into place, but do not count
    on every patch(1) doing so)."""
    path = os.path.join(scratch, rel)
    if os.path.isfile(path) and not os.path.islink(path) and os.lstat(path).st_nlink > 1:
        tmp = path + ".mmaudit-unshare"
        shutil.copy2(path, tmp)
        os.replace(tmp, path)


def _first_failure(output, code):
    """The first failing hunk or file in patch(1)'s output (with or without -s)."""
    current = None
    lines = [l.strip() for l in output.splitlines()]
    for i, line in enumerate(lines):
        m = re.match(r"(?:patching|checking) file (.+)$", line)
        if m:
            current = m.group(1).strip("'\"")
            continue
        m = re.match(r"\|(?:\+\+\+|---) (\S+)", line)    # the header of a missing file
        if m:
            current = _strip1(m.group(1)) or current
            continue
        if line.startswith("can't find file to patch"):
            names = [re.match(r"\|(?:\+\+\+|---) (\S+)", l) for l in lines[i + 1:i + 12]]
            names = [_strip1(n.group(1)) for n in names if n and _strip1(n.group(1))]
            return "%s: no such file" % names[-1] if names else line
        if line.startswith("No file to patch"):
            return "%s: no such file" % current if current else line
        if not line or set(line) == {"-"} or re.match(r"Hunk #\d+ succeeded", line) \
                or re.match(r"\d+ out of \d+ hunks? (ignored|FAILED)", line) \
                or line.startswith(("Perhaps you used", "The text leading", "|")):
            continue
        return "%s: %s" % (current, line) if current else line
    return "patch exited with status %d" % code


def _run_patch(path, cwd):
    # Not -s: the output is captured, and without -s it names the failing file.
    # patch(1) echoes lines of the patch, which may be in any encoding.
    return subprocess.run(PATCH + ["-i", path], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace")


def _dry_run(tree, patch_paths, touched, scratch):
    """Apply the series in order to copies of the touched files."""
    for rel in sorted({r for rels in touched.values() for r in rels}):
        src = os.path.join(tree, rel)
        if os.path.lexists(src):
            dst = os.path.join(scratch, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    apply_each(patch_paths, scratch)


def apply_each(patch_paths, where):
    """Apply the series in order in WHERE; UsageError names the first that fails."""
    for path in patch_paths:
        proc = _run_patch(path, where)
        if proc.returncode != 0:
            why = _first_failure(proc.stdout + "\n" + proc.stderr, proc.returncode)
            raise UsageError("%s does not apply: %s" % (os.path.basename(path), why))


class _Backup:
    """The touched files as they were, and what to remove on a restore."""

    def __init__(self, tree, rels, directory):
        self.tree = tree
        self.rels = rels
        self.directory = directory
        self.saved = []         # rels copied to DIRECTORY
        self.absent = []        # rels the tree did not have
        self.new_dirs = []      # directories the series may create, outermost first
        self.listings = {}      # directory -> (its entries, atime, mtime) before the series
        for rel in rels:
            src = os.path.join(tree, rel)
            if os.path.lexists(src):
                if os.path.isdir(src) and not os.path.islink(src):
                    raise UsageError("%s is a directory, not a file to patch" % rel)
                dst = os.path.join(directory, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst, follow_symlinks=False)
                self.saved.append(rel)
            else:
                self.absent.append(rel)
                parent = os.path.dirname(rel)
                chain = []
                while parent and not os.path.lexists(os.path.join(tree, parent)):
                    chain.append(parent)
                    parent = os.path.dirname(parent)
                for d in reversed(chain):
                    if d not in self.new_dirs:
                        self.new_dirs.append(d)
                self._list(os.path.join(tree, parent))
            self._list(os.path.join(tree, os.path.dirname(rel)))

    def _list(self, directory):
        if directory not in self.listings and os.path.isdir(directory):
            st = os.stat(directory)
            self.listings[directory] = (set(os.listdir(directory)), st.st_atime_ns, st.st_mtime_ns)

    def restore(self):
        tree = self.tree
        for rel in self.saved:
            src = os.path.join(self.directory, rel)
            dst = os.path.join(tree, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            tmp = "%s.mmaudit-restore-%d" % (dst, os.getpid())
            shutil.copy2(src, tmp, follow_symlinks=False)
            os.replace(tmp, dst)
        for rel in self.absent:
            dst = os.path.join(tree, rel)
            if os.path.lexists(dst) and not (os.path.isdir(dst) and not os.path.islink(dst)):
                os.unlink(dst)
        # A patch(1) killed mid-file leaves its temporary output, named
        # after the file, beside it.
        bases = {os.path.basename(rel) + "." for rel in self.rels}
        for parent, (before, _, _) in self.listings.items():
            if not os.path.isdir(parent):
                continue
            for name in set(os.listdir(parent)) - before:
                path = os.path.join(parent, name)
                if any(name.startswith(b) for b in bases) and os.path.isfile(path) \
                        and not os.path.islink(path):
                    os.unlink(path)
        for d in reversed(self.new_dirs):
            path = os.path.join(tree, d)
            if os.path.isdir(path) and not os.path.islink(path):
                for name in os.listdir(path):
                    if any(name.startswith(b) for b in bases) \
                            and os.path.isfile(os.path.join(path, name)):
                        os.unlink(os.path.join(path, name))
            try:
                os.rmdir(os.path.join(tree, d))
            except OSError:
                pass
        for parent, (_, atime, mtime) in self.listings.items():
            try:
                os.utime(parent, ns=(atime, mtime))
            except OSError:
                pass


def apply_series(tree, patch_paths):
    """Apply PATCH_PATHS in order to TREE, all or none; return the files
    (relative to TREE) the series changed, created or deleted.

    Raises UsageError("<patch> does not apply: <why>") without writing the
    tree when the series does not apply as a whole. On any failure or
    interruption during the real application the tree is put back byte for
    byte (and mtime for mtime) before the exception goes on. The last
    patch going in is the commit point: an interruption after it (while
    the temporary files are removed) leaves the whole series applied."""
    if not shutil.which("patch"):
        raise UsageError("patch(1) is missing; install it with: apt-get install patch")
    tree = os.path.abspath(tree)
    patch_paths = [os.path.abspath(p) for p in patch_paths]
    touched = {}
    for path in patch_paths:
        try:
            with open(path, errors="surrogateescape") as f:
                rels = touched_files(f.read())
        except OSError as err:
            raise UsageError("%s: cannot read the patch (%s)" % (path, err.strerror))
        if not rels:
            raise UsageError("%s does not apply: it names no file" % os.path.basename(path))
        for rel in rels:
            check_name(tree, os.path.basename(path), rel)
        touched[path] = rels
    rels = []
    for path in patch_paths:
        rels += [r for r in touched[path] if r not in rels]

    with tempfile.TemporaryDirectory(prefix="mmaudit-apply-") as tmp:
        scratch = os.path.join(tmp, "dry-run")
        os.mkdir(scratch)
        _dry_run(tree, patch_paths, touched, scratch)
        backup = _Backup(tree, rels, os.path.join(tmp, "backup"))
        try:
            apply_each(patch_paths, tree)
        except BaseException:
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                backup.restore()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            raise
    return rels
