"""Read a findings.json (or a shard of one) and check it against the schema
before anything trusts it: merge and diff take files from anywhere."""

import json
import os
import stat

from . import UsageError
from .audit import VERDICTS

SCHEMA = "mmaudit-findings/1"
MAX_SIZE = 256 * 1024 * 1024
_STR = str
_OPT_STR = (str, type(None))
_INT = int
SITE = {"file": _STR, "line": _INT, "column": _INT, "function": _OPT_STR, "api": _STR,
        "mm": _OPT_STR, "verdict": _STR, "confidence": _STR, "reason": _STR, "evidence": list}
STEP = {"file": _STR, "line": _INT, "what": _STR}
STATS = {"files_searched": _INT, "files_with_borrows": _INT, "files_parsed": _INT,
         "files_failed": list, "files_unreadable": list, "store_files": _INT}
CONFIDENCE = ("High", "Moderate", "Low")


def load(path, shard=False):
    """The document at PATH, or a one-line UsageError saying what is wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise UsageError("%s: cannot read it (%s)" % (path, err.strerror))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UsageError("%s: not a regular file" % path)
    with os.fdopen(fd, "rb") as f:
        if st.st_size > MAX_SIZE:
            raise UsageError("%s: larger than %d MiB, not a findings.json" % (path, MAX_SIZE >> 20))
        raw = f.read()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise UsageError("%s: not a findings.json (%s)" % (path, str(err).split("\n")[0]))
    problem = check(data, shard)
    if problem:
        raise UsageError("%s: not a %sfindings.json: %s" % (path, "shard " if shard else "", problem))
    return data


def _fields(obj, spec, what):
    if not isinstance(obj, dict):
        return "%s is not an object" % what
    for name, kind in spec.items():
        if name not in obj:
            return "%s has no %s" % (what, name)
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            return "%s.%s has the wrong type" % (what, name)
    return None


def check(data, shard=False):
    """What is wrong with DATA as a findings document, or None."""
    problem = _fields(data, {"schema": _STR, "tool": dict, "tree": dict, "stats": dict,
                             "summary": dict, "sites": list}, "the document")
    if problem:
        return problem
    if data["schema"] != SCHEMA:
        return "schema is %r, not %r" % (data["schema"], SCHEMA)
    problem = (_fields(data["tool"], {"name": _STR, "version": _STR, "spatch": _STR}, "tool")
               or _fields(data["tree"], {"source": _STR, "version": _OPT_STR}, "tree")
               or _fields(data["stats"], STATS, "stats"))
    if problem:
        return problem
    for key in ("files_failed", "files_unreadable"):
        if not all(isinstance(f, str) for f in data["stats"][key]):
            return "stats.%s holds a non-string" % key
    seen = set()
    for i, site in enumerate(data["sites"]):
        what = "sites[%d]" % i
        problem = _fields(site, SITE, what)
        if problem:
            return problem
        if site["verdict"] not in VERDICTS or site["confidence"] not in CONFIDENCE:
            return "%s has an unknown verdict or confidence" % what
        if site["line"] < 1 or site["column"] < 0:
            return "%s has a bad position" % what
        for j, step in enumerate(site["evidence"]):
            problem = _fields(step, STEP, "%s.evidence[%d]" % (what, j))
            if problem:
                return problem
        where = (site["file"], site["line"], site["column"])
        if where in seen:
            return "%s repeats the site %s:%d:%d" % ((what,) + where)
        seen.add(where)
    if shard:
        problem = _fields(data.get("shard"), {"index": _INT, "count": _INT, "store_files": list},
                          "shard")
        if problem:
            return problem
        if not 1 <= data["shard"]["index"] <= data["shard"]["count"]:
            return "shard.index is out of range"
        if not all(isinstance(f, str) for f in data["shard"]["store_files"]):
            return "shard.store_files holds a non-string"
    return None
