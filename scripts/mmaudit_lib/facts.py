"""Run the fact rules with spatch, and cache their facts by file content.

Fail closed: facts count only when spatch analyzed their file to the end
(the rules' last fact, "done", says so) and every fact has the fields its
kind needs.  A cache entry is taken only when it is a regular file that
holds the facts of the same content under the same rule, intact."""

import concurrent.futures
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time

from . import UsageError, prune, scan, spatch
from . import tree as treemod

FACTS_SCHEMA = "mmaudit-facts/3"
MAX_ENTRY = 16 * 1024 * 1024
_POSITION = {"file": str, "line": int, "col": int}
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))
# The fields of each kind of fact, with their types; "func" is the function
# spatch names for the position, None outside one.
KINDS = {
    "site": {"api": str, "mm": str},
    "pinned": {},
    "unpinned": {},
    "pin": {"how": str, "at": int, "at_func": _OPT_STR},
    "release": {"at": int, "at_func": _OPT_STR},
    "owner": {"type": str, "field": str, "base": str, "alias_at": _OPT_INT},
    "param": {"name": str, "index": int, "callee": str},
    "call": {"index": int, "arg": str},
    "arg_pinned": {"index": int},
    "arg_unpinned": {"index": int},
    "owner_param": {"name": str, "index": int, "callee": str, "field": str},
    "field_pinned": {"index": int, "field": str},
    "field_unpinned": {"index": int, "field": str},
    "arg_param": {"index": int, "param": int, "caller": str},
    "arg_owner": {"index": int, "type": str, "field": str, "base": str, "alias_at": _OPT_INT},
    "store": {"base": str, "value": str},
    "type": {"type": str},
    "type_chain": {"root": str, "via": str},
    "owner_chain": {"root": str, "via": str, "field": str, "base": str, "alias_at": _OPT_INT},
    "nopin": {},
    "grab": {"at": int},
    "dropped": {"at": int},
    "indirect": {"how": str, "at": int},
    "guard": {"cond": str, "branch": str},
    "freed_before": {"at": int},
    "alias_pinned": {"alias": str},
    "summary_pinned": {},
    "alias_unpinned": {"alias": str},
    "current": {"field": str, "alias_at": _OPT_INT},
    "released": {"at": int},
    "put_after": {"at": int},
    "put_in_region": {"at": int},
    "failed_get": {"at": int},
    "unchecked_get": {"at": int},
    "put_completes": {"put": int, "at": int},
    "put_calls": {"put": int, "at": int, "callee": str},
    "completes": {},
    "called_completes": {"call": int, "at": int, "caller": _OPT_STR},
}


def valid_fact(fact):
    """True when FACT has exactly the fields of its kind, with their types."""
    if not isinstance(fact, dict):
        return False
    fields = KINDS.get(fact.get("kind"))
    if fields is None:
        return False
    wanted = dict(_POSITION, kind=str, func=_OPT_STR, **fields)
    if set(fact) != set(wanted):
        return False
    for name, kind in wanted.items():
        value = fact[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
    return fact["line"] > 0 and fact["col"] >= 0


def load_entry(path, max_size, fields):
    """The JSON object of a cache entry at PATH with exactly FIELDS, or None:
    no link is followed, no FIFO or device opened, nothing over MAX_SIZE read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_size:
            return None
        with os.fdopen(fd, "rb") as f:
            fd = None
            entry = json.loads(f.read())
    except (OSError, ValueError):
        return None
    finally:
        if fd is not None:
            os.close(fd)
    return entry if isinstance(entry, dict) and set(entry) == set(fields) else None


def content_hash(tree, rel):
    """What the facts of REL depend on: its code, not its comments nor the
    blanks at the ends of its lines (scan.code_text)."""
    with open(os.path.join(tree, rel), "rb") as f:
        text = f.read().decode("latin-1")
    return hashlib.sha256(scan.code_text(text).encode("latin-1")).hexdigest()


class FactCache:
    """Facts of one rule on one file content, on disk.  Best effort: a
    cache that cannot be read or written only costs time."""

    def __init__(self, directory):
        self.directory = directory
        self.salts = {}

    def _salt(self, rule, defines):
        """What every key of one rule run shares: spatch, our code, the rule."""
        index = (rule, tuple(sorted(defines)))
        if index not in self.salts:
            h = hashlib.sha256(spatch.spatch_version().encode() + FACTS_SCHEMA.encode())
            for path in (spatch.MACRO_FILE, __file__, prune.__file__, scan.__file__, rule):
                with open(path, "rb") as f:
                    h.update(f.read())
            h.update(repr(index[1]).encode())
            self.salts[index] = h.hexdigest()
        return self.salts[index]

    def empty(self):
        """True when the cache holds no entry at all (a first audit)."""
        try:
            with os.scandir(self.directory) as it:
                return not any(e.is_dir(follow_symlinks=False) for e in it)
        except OSError:
            return True

    def key(self, rule, defines, content):
        return hashlib.sha256((self._salt(rule, defines) + content).encode()).hexdigest()

    def _path(self, key):
        return os.path.join(self.directory, key[:2], key + ".json")

    def get(self, key, content):
        """The cached facts, or None for anything but an intact entry."""
        entry = load_entry(self._path(key), MAX_ENTRY,
                           {"schema", "key", "content", "facts", "digest"})
        if entry is None:
            return None
        if (entry["schema"], entry["key"], entry["content"]) != (FACTS_SCHEMA, key, content):
            return None
        facts = entry["facts"]
        if not isinstance(facts, list) or entry["digest"] != _digest(key, facts):
            return None
        if not all(valid_fact(f) for f in facts):
            return None
        return facts

    def put(self, key, content, facts):
        path = self._path(key)
        entry = {"schema": FACTS_SCHEMA, "key": key, "content": content, "facts": facts,
                 "digest": _digest(key, facts)}
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(entry, f, sort_keys=True)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass


def _digest(key, facts):
    """Catches a damaged or hand-edited entry (not a forger with our code)."""
    return hashlib.sha256((key + json.dumps(facts, sort_keys=True)).encode()).hexdigest()


class FactRunner:
    """Runs the fact rules over the files of one tree, for one audit.

    `failed` collects, for the whole audit, the files whose facts could not
    be had, with the reason."""

    def __init__(self, tree, jobs=1, timeout=120, cache=None, pruned=True):
        self.tree = tree
        self.jobs = jobs
        self.timeout = timeout
        self.cache = cache
        self.pruned = pruned      # spatch sees only the bodies a rule can match in
        self.failed = {}
        self.started = []         # SpatchRuns of start_early()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Stop every spatch started early and not used."""
        for launch in self.started:
            launch.close()
        self.started = []

    def start_early(self, rule, defines=()):
        """Start spatch on RULE before its files are known, so that its parse
        of the rule overlaps the caller's walk of the tree (run() hands it
        the files); None when the fact cache holds facts already: then
        most runs have nothing to do, and an early start would cost CPU."""
        if self.cache is not None and not self.cache.empty():
            return None
        launch = SpatchRun(rule, defines, self.jobs, self.timeout)
        self.started.append(launch)
        return launch

    def run(self, rule, files, defines=(), started=None):
        """(facts, {file: reason}) of RULE on FILES: facts only from files
        analyzed to the end; the others are returned with the reason.
        STARTED: start_early()'s spatch for RULE and DEFINES, if any."""
        failed, todo = {}, []
        for rel in files:
            why = scan.spatch_can_take(rel)
            if why:
                failed[rel] = why
            else:
                todo.append(rel)
        facts, missing, keys = [], [], {}
        for rel in todo:
            if self.cache is None:
                missing.append(rel)
                continue
            try:
                content = content_hash(self.tree, rel)
            except OSError as err:
                failed[rel] = "cannot read the file: %s" % err.strerror
                continue
            keys[rel] = (self.cache.key(rule, defines, content), content)
            cached = self.cache.get(*keys[rel])
            if cached is None:
                missing.append(rel)
            else:       # the same content may sit under another name
                facts += [dict(f, file=rel) for f in cached]
        if missing:
            fresh, finished, why_not = self._spatch(rule, missing, defines, started)
        else:
            fresh, finished, why_not = [], set(), {}
            if started:
                started.close()
        for rel in missing:
            if rel in finished:
                mine = [f for f in fresh if f["file"] == rel]
                facts += mine
                if rel in keys:
                    self.cache.put(keys[rel][0], keys[rel][1], mine)
            else:
                failed[rel] = why_not.get(rel) or why_not.get(None) or \
                    "spatch did not finish this file"
        self.failed.update(failed)
        return facts, failed

    def run_all(self, runs):
        """[run(rule, files, defines[, started]) for each of RUNS], JOBS at
        a time: a short run's start-up overlaps a longer one.  Results in
        RUNS' order."""
        if self.jobs < 2 or len(runs) < 2:
            return [self.run(*r) for r in runs]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs) as pool:
            return list(pool.map(lambda r: self.run(*r), runs))

    def _spatch(self, rule, files, defines, started=None):
        """(facts, files analyzed to the end, {file or None: why not})."""
        launch = started or SpatchRun(rule, defines, self.jobs, self.timeout)
        try:
            paths = self._inputs(rule, defines, files, os.path.join(launch.tmp, "pruned"))
            proc = launch.finish([paths[rel] for rel in self._largest_first(files)])
        finally:
            launch.close()
        return self._parse(proc, files, rule, {path: rel for rel, path in paths.items()})

    def _inputs(self, rule, defines, files, scratch):
        """{file: the path spatch is given}: the file itself, or a copy in
        SCRATCH with the bodies RULE cannot match in blanked (prune.py);
        the copy has the same lines and columns."""
        paths = {rel: os.path.join(self.tree, rel) for rel in files}
        words = prune.rule_file_words(rule, defines) if self.pruned else None
        if words is None:
            return paths
        for rel in files:
            try:
                with open(paths[rel], "rb") as f:
                    text = f.read().decode("latin-1")
            except OSError:
                continue        # spatch will say what is wrong with it
            pruned = prune.prune(text, words)
            if pruned != text:
                copy = os.path.join(scratch, rel)
                os.makedirs(os.path.dirname(copy), exist_ok=True)
                with open(copy, "wb") as f:
                    f.write(pruned.encode("latin-1"))
                paths[rel] = copy
        return paths

    def _largest_first(self, files):
        """FILES, the largest first: spatch's workers take them in order, so
        no large file is left to run alone at the end."""
        def size(rel):
            try:
                return -os.stat(os.path.join(self.tree, rel)).st_size
            except OSError:
                return 0
        return sorted(files, key=lambda rel: (size(rel), rel))

    def _parse(self, proc, files, rule, names):
        """NAMES: {path spatch was given: file}."""
        facts, finished, why_not = [], set(), {}
        rel_of = functools.partial(self._rel, names)
        wanted = set(files)
        for line in (proc.stdout + "\n" + proc.stderr).splitlines():
            if line.startswith("MMAUDIT "):
                try:
                    fact = json.loads(line[8:])
                except ValueError:
                    why_not[None] = "spatch's output could not be read"
                    continue
                if isinstance(fact, dict) and fact.get("kind") == "done" \
                        and isinstance(fact.get("files"), list):
                    finished.update(rel_of(f) for f in fact["files"] if isinstance(f, str))
                elif valid_fact(fact):
                    fact["file"] = rel_of(fact["file"])
                    facts.append(fact)
                else:
                    why_not[None] = "spatch printed a malformed fact"
                continue
            m = re.match(r"EXN: (.*) in (.+)$", line) or \
                re.match(r"timeout \(we abort\): ()(.+)$", line)
            if m:
                rel = rel_of(m.group(2))
                why_not[rel] = ("spatch timed out after %d s" % self.timeout
                                if "imeout" in line else "spatch failed: " + m.group(1))
        if None in why_not:        # cannot tell whose output was damaged
            finished = set()
        if proc.returncode > 0 and not finished and not facts and not why_not:
            err = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
            raise UsageError("spatch failed on %s: %s" % (os.path.basename(rule), err))
        if proc.returncode < 0:
            why_not.setdefault(None, "spatch was killed (signal %d) before it finished this file"
                               % -proc.returncode)
        elif proc.returncode != 0:
            why_not.setdefault(None, "spatch stopped (exit %d) before it finished this file"
                               % proc.returncode)
        finished &= wanted
        return [f for f in facts if f["file"] in finished], finished, why_not

    def _rel(self, names, path):
        return names.get(path) or os.path.relpath(path, self.tree)


class SpatchRun:
    """One spatch process for one rule, started before its files are known:
    spatch parses the rule first (the longest part of a short run) and only
    then opens its --file-groups, here a FIFO, and waits for the list.
    finish() hands it the list and waits for it to end; close() stops it if
    it is still running and removes its scratch directory.  spatch runs in
    that directory, never in the tree: with -D values it writes a copy of
    the rule into its working directory."""

    def __init__(self, rule, defines, jobs, timeout):
        self.tmp = tempfile.mkdtemp(prefix="mmaudit-")
        self.proc, self.output = None, []
        try:
            self.groups = os.path.join(self.tmp, "groups")
            os.mkfifo(self.groups, 0o600)
            cmd = spatch.base_command(rule) + ["--file-groups", self.groups,
                                               "--timeout", str(timeout)]
            for d in defines:
                cmd += ["-D", d]
            if jobs > 1:
                cmd += ["--jobs", str(jobs), "--chunksize", "1"]
            # Files, not pipes: nothing read them while spatch waits for its list.
            self.output = [tempfile.TemporaryFile(dir=self.tmp) for _ in range(2)]
            self.proc = subprocess.Popen(cmd, cwd=self.tmp, stdin=subprocess.DEVNULL,
                                         stdout=self.output[0], stderr=self.output[1],
                                         env=dict(os.environ, TMPDIR=self.tmp),
                                         preexec_fn=treemod.die_with_parent())
        except BaseException:
            self.close()
            raise

    def finish(self, paths):
        """Hand spatch PATHS, one group each; its CompletedProcess."""
        data = ("\n\n".join(paths) + "\n").encode("utf-8", "surrogateescape")
        fd = self._open_groups()
        if fd is not None:
            try:
                os.set_blocking(fd, True)
                while data:
                    data = data[os.write(fd, data):]
            except BrokenPipeError:
                pass            # spatch is gone: its exit status says why
            finally:
                os.close(fd)
        self.proc.wait()
        texts = []
        for f in self.output:
            f.seek(0)
            # surrogateescape: file names that are not UTF-8 round-trip.
            texts.append(f.read().decode("utf-8", "surrogateescape"))
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, *texts)

    def _open_groups(self):
        """The FIFO's write end, once spatch opens it to read; None if
        spatch ends first (a rule it cannot parse, a signal)."""
        while True:
            try:
                return os.open(self.groups, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != errno.ENXIO:
                    raise
            if self.proc.poll() is not None:
                return None
            time.sleep(0.002)

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in self.output:
            f.close()
        self.output = []
        shutil.rmtree(self.tmp, ignore_errors=True)
