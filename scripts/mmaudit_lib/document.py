"""Read a findings.json (or a shard of one) and check it against the schema
before anything trusts it: merge and diff take files from anywhere."""

import json
import os
import stat

from . import UsageError
from .audit import VERDICTS

SCHEMA = "mmaudit-findings/2"
SCHEMA_1 = "mmaudit-findings/1"
# What a schema-1 document did not record: its files_failed held names only.
NOT_RECORDED = "not recorded (%s)" % SCHEMA_1
# The hazard kinds a site can carry (a second dimension beside its verdict).
HAZARDS = ("put-in-completion",)
MAX_SIZE = 256 * 1024 * 1024
_STR = str
_OPT_STR = (str, type(None))
_INT = int
SITE_1 = {"file": _STR, "line": _INT, "column": _INT, "function": _OPT_STR, "api": _STR,
          "mm": _OPT_STR, "verdict": _STR, "confidence": _STR, "reason": _STR, "evidence": list}
SITE = dict(SITE_1, hazards=list)
STEP = {"file": _STR, "line": _INT, "what": _STR}
HAZARD = {"kind": _STR, "reason": _STR, "evidence": list}
FAILED = {"file": _STR, "reason": _STR}
STATS = {"files_searched": _INT, "files_with_borrows": _INT, "files_parsed": _INT,
         "files_failed": list, "files_unreadable": list, "store_files": _INT}
CONFIDENCE = ("High", "Moderate", "Low")


def load(path, shard=False):
    """The document at PATH, or a one-line UsageError saying what is wrong.

    A complete schema-1 document (not a shard) is checked as schema 1 and
    migrated in memory (see migrate()), so that diff can compare an audit
    published before schema 2 with a new one."""
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
    old = isinstance(data, dict) and data.get("schema") == SCHEMA_1
    if old and shard:
        # A merged audit would claim "no hazards" for sites nobody looked at.
        raise UsageError("%s: a %s shard; audit the shards again with this mmaudit (%s)"
                         % (path, SCHEMA_1, SCHEMA))
    problem = check(data, shard, schema=SCHEMA_1 if old else SCHEMA)
    if problem:
        raise UsageError("%s: not a %sfindings.json: %s" % (path, "shard " if shard else "", problem))
    if old:
        data = migrate(data)
        problem = check(data)
        if problem:
            raise UsageError("%s: a %s document that does not migrate to %s: %s"
                             % (path, SCHEMA_1, SCHEMA, problem))
    return data


def migrate(data):
    """A checked schema-1 DATA as schema 2, in place: no hazards on any site
    (schema 1 did not look for them) and files_failed as objects whose
    reason says it was not recorded.  "migrated_from" keeps the old schema
    for the readers that must say so (diff)."""
    for site in data["sites"]:
        site["hazards"] = []
    stats = data["stats"]
    stats["files_failed"] = [{"file": f, "reason": NOT_RECORDED}
                             for f in sorted(set(stats["files_failed"]))]
    data["schema"] = SCHEMA
    data["migrated_from"] = SCHEMA_1
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


def _steps(steps, what, positive=False):
    for j, step in enumerate(steps):
        where = "%s.evidence[%d]" % (what, j)
        problem = _fields(step, STEP, where)
        if problem:
            return problem
        if positive and step["line"] < 1:
            return "%s has a bad line" % where
    return None


def _files_failed(failed):
    """Schema 2: one {"file", "reason"} object per file, sorted by file."""
    last = None
    for i, entry in enumerate(failed):
        what = "stats.files_failed[%d]" % i
        problem = _fields(entry, FAILED, what)
        if problem:
            return problem
        if last is not None and entry["file"] <= last:
            return "%s is %s" % (what, "a repeated file" if entry["file"] == last
                                 else "out of order (sorted by file)")
        last = entry["file"]
    return None


def _hazards(hazards, what):
    """Known kinds, at most one of each per site (its evidence can hold
    several paths), evidence steps with a real line."""
    kinds = set()
    for k, hazard in enumerate(hazards):
        where = "%s.hazards[%d]" % (what, k)
        problem = _fields(hazard, HAZARD, where)
        if problem:
            return problem
        if hazard["kind"] not in HAZARDS:
            return "%s has an unknown kind" % where
        if hazard["kind"] in kinds:
            return "%s repeats the kind %s" % (where, hazard["kind"])
        kinds.add(hazard["kind"])
        problem = _steps(hazard["evidence"], where, positive=True)
        if problem:
            return problem
    return None


def check(data, shard=False, schema=SCHEMA):
    """What is wrong with DATA as a findings document of SCHEMA (this one,
    or SCHEMA_1 before a migration), or None."""
    problem = _fields(data, {"schema": _STR, "tool": dict, "tree": dict, "stats": dict,
                             "summary": dict, "sites": list}, "the document")
    if problem:
        return problem
    if data["schema"] != schema:
        return "schema is %r, not %r" % (data["schema"], schema)
    v1 = schema == SCHEMA_1
    problem = (_fields(data["tool"], {"name": _STR, "version": _STR, "spatch": _STR}, "tool")
               or _fields(data["tree"], {"source": _STR, "version": _OPT_STR}, "tree")
               or _fields(data["stats"], STATS, "stats"))
    if problem:
        return problem
    if v1:
        if not all(isinstance(f, str) for f in data["stats"]["files_failed"]):
            return "stats.files_failed holds a non-string"
    else:
        problem = _files_failed(data["stats"]["files_failed"])
        if problem:
            return problem
    if not all(isinstance(f, str) for f in data["stats"]["files_unreadable"]):
        return "stats.files_unreadable holds a non-string"
    seen = set()
    for i, site in enumerate(data["sites"]):
        what = "sites[%d]" % i
        problem = _fields(site, SITE_1 if v1 else SITE, what)
        if problem:
            return problem
        if v1 and "hazards" in site:
            return "%s has hazards, which %s does not have" % (what, SCHEMA_1)
        if site["verdict"] not in VERDICTS or site["confidence"] not in CONFIDENCE:
            return "%s has an unknown verdict or confidence" % what
        if site["line"] < 1 or site["column"] < 0:
            return "%s has a bad position" % what
        problem = _steps(site["evidence"], what)
        if not problem and not v1:
            problem = _hazards(site["hazards"], what)
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
