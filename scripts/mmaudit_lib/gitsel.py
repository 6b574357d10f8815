"""Pick the files worth handing to spatch with git's help.

In a git work tree the index names every tracked file with the id of its
content (its blob), and `git diff-files` names the files whose content may
differ from it.  So the answer "does this file have a line matching the
pattern" is kept per blob id: a tracked file that git says is unchanged is
answered from that record, and only new blobs, changed files and untracked
files are read.  The files searched are those a walk of the tree would
search (scan.Walk), so an audit gives the same bytes either way.

`git grep` was measured for the first search and left: on 6.12 its -E
engine (the C library's) took 7.7 s where grep -r takes 1.0 s."""

import concurrent.futures
import functools
import hashlib
import json
import os
import stat
import subprocess
import tempfile

from . import scan
from .facts import load_entry

CACHE_SCHEMA = "mmaudit-grep-by-blob/1"
OID_HEX = 40
# Past a tenth of the files (and WALK_MIN files), a walk of the tree reads
# them faster than a list of names.
WALK_FRACTION = 10
WALK_MIN = 500


def open_tree(tree, jobs=1, cache_dir=None):
    """A GitSelection of TREE, or a scan.Walk whose `note` says why git
    could not be used (None when TREE is not in a git work tree at all)."""
    walk = scan.Walk(tree, jobs)
    if not in_work_tree(tree):
        return walk
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        listing, changed, others = pool.map(functools.partial(run_git, tree), [
            ["ls-files", "-s", "-z"],                           # the index
            ["diff-files", "--relative", "-z", "--name-only"],   # may differ from it
            ["ls-files", "-o", "-z"]])                          # untracked, ignored too
    if listing is None or changed is None or others is None:
        walk.note = "git could not list the files of %s; searching the tree itself" % tree
        return walk
    tracked, suspects = {}, set()
    # Each record: MODE SP OID SP STAGE TAB NAME (a 40-hex id: SHA-1 repositories).
    for record in listing.split(b"\0")[:-1]:
        if record[:6] == b"160000":
            walk.note = ("%s holds a git submodule (%s), whose files git does not list; "
                         "searching the tree itself" % (tree, os.fsdecode(record[50:])))
            return walk
        if not record.endswith((b".c", b".h")) or record[:6] == b"120000":
            continue
        if record[6:7] != b" " or record[47:48] != b" " or record[49:50] != b"\t":
            walk.note = "git's index of %s is not in a form mmaudit reads; searching the " \
                        "tree itself" % tree
            return walk
        rel = os.fsdecode(record[50:])
        if record[48:49] != b"0":
            suspects.add(rel)       # a merge in progress: read the file itself
        else:
            tracked[rel] = record[7:47].decode()
    if not tracked:
        walk.note = ("git's index of %s holds none of its C files; searching the tree itself"
                     % tree)
        return walk
    untracked = [os.fsdecode(n) for n in others.split(b"\0")[:-1]]
    # A repository inside the tree is listed as its directory, not its files.
    nested = [rel for rel in untracked if rel.endswith("/")]
    if nested:
        walk.note = ("%s holds another git repository (%s); searching the tree itself"
                     % (tree, nested[0]))
        return walk
    suspects |= {os.fsdecode(n) for n in changed.split(b"\0")[:-1]} & (set(tracked) | suspects)
    return GitSelection(tree, jobs, cache_dir, tracked, suspects,
                        [rel for rel in untracked if rel.endswith((".c", ".h"))])


class GitSelection:
    """Candidate files of a git work tree (see the module's comment)."""

    note = None

    def __init__(self, tree, jobs, cache_dir, tracked, suspects, untracked):
        self.tree = tree
        self.jobs = jobs
        self.cache_dir = cache_dir
        # Files git vouches for: the content is the blob's.
        self.clean = {rel: oid for rel, oid in tracked.items() if rel not in suspects}
        # Files to read every time: changed, in a merge, or untracked; only
        # regular files count, as a walk skips links, FIFOs and devices.
        self.read_always = sorted(rel for rel in (suspects | set(untracked))
                                  if _regular(os.path.join(tree, rel)))
        self.searched = len(self.clean) + len(self.read_always)

    def elsewhere(self, root, changed):
        """The selection of ROOT, a copy of this tree in which only the files
        CHANGED differ: git's record still answers for the others."""
        clean = {rel: oid for rel, oid in self.clean.items() if rel not in changed}
        return GitSelection(root, self.jobs, self.cache_dir, clean, set(),
                            sorted(set(self.read_always) | {rel for rel in changed
                                                            if rel.endswith((".c", ".h"))}))

    def counted(self, pattern, unreadable):
        found = self.matching(pattern, unreadable)
        return self.searched, found

    def matching(self, pattern, unreadable):
        record = self._load(pattern)
        unknown = sorted(rel for rel, oid in self.clean.items() if oid not in record["seen"])
        failed = set()
        to_read = unknown + self.read_always
        if len(to_read) > WALK_MIN and len(to_read) * WALK_FRACTION > self.searched:
            # Most files unknown (a first run): a walk of the tree reads them
            # faster than a list of names, and searches the same files.
            hits = set(scan.Walk(self.tree, self.jobs).matching(pattern, failed))
        else:
            hits = set(scan.parse_names(scan.run_grep(
                self.tree, ["-l"], pattern, failed, self.jobs, files=to_read)))
        if unreadable is not None:
            unreadable |= failed
        learned = {self.clean[rel] for rel in unknown if rel not in failed}
        if learned:
            record["seen"] |= learned
            record["match"] |= {self.clean[rel] for rel in unknown if rel in hits}
            self._save(pattern, record)
        found = hits | {rel for rel, oid in self.clean.items() if oid in record["match"]}
        return sorted(found)

    def _path(self, pattern):
        key = hashlib.sha256((CACHE_SCHEMA + "\0" + pattern).encode()).hexdigest()
        return os.path.join(self.cache_dir, "grep", key + ".json") if self.cache_dir else None

    def _load(self, pattern):
        empty = {"seen": set(), "match": set()}
        path = self._path(pattern)
        if path is None:
            return empty
        entry = load_entry(path, 64 * 1024 * 1024, {"schema", "pattern", "seen", "match"})
        if entry is None or entry["schema"] != CACHE_SCHEMA or entry["pattern"] != pattern \
                or not isinstance(entry["seen"], str) or not isinstance(entry["match"], str):
            return empty
        seen, match = _oids(entry["seen"]), _oids(entry["match"])
        if seen is None or match is None or not match <= seen:
            return empty
        return {"seen": seen, "match": match}

    def _save(self, pattern, record):
        path = self._path(pattern)
        if path is None:
            return
        entry = {"schema": CACHE_SCHEMA, "pattern": pattern,
                 "seen": "".join(sorted(record["seen"])),
                 "match": "".join(sorted(record["match"]))}
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(entry, f)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass        # a cache that cannot be written only costs time


def _oids(text):
    """The set of 40-hex blob ids run together in TEXT, or None if it is not that."""
    if len(text) % OID_HEX or any(c not in "0123456789abcdef" for c in set(text)):
        return None
    return {text[k:k + OID_HEX] for k in range(0, len(text), OID_HEX)}


def _regular(path):
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False        # gone: a deleted tracked file is not searched


def in_work_tree(tree):
    """True when TREE is inside a git work tree and git can be run."""
    out = run_git(tree, ["rev-parse", "--is-inside-work-tree"])
    return out is not None and out.strip() == b"true"


def run_git(tree, args):
    """git's stdout, run in TREE without taking optional locks (it never
    writes the index), or None if git is missing or fails.

    Inode change times are not trusted: a hard-linked copy of the tree (the
    scratch trees of --base, check and fix --verify) changes them on every
    file, and git would then read the whole tree to see that nothing
    changed.  Size and modification time still are compared."""
    try:
        proc = subprocess.run(["git", "--no-optional-locks", "-c", "core.trustctime=false"]
                              + args, cwd=tree,
                              capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None
