"""The whole-tree audit: run the fact rules, follow each borrowed mm to its
stores, and decide a verdict with an evidence chain."""

import collections
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from . import VERSION, UsageError, scan, spatch, tree as treemod

SITES_RULE = os.path.join(spatch.COCCI_DIR, "audit_sites.cocci")
STORES_RULE = os.path.join(spatch.COCCI_DIR, "audit_stores.cocci")
CALLERS_RULE = os.path.join(spatch.COCCI_DIR, "audit_callers.cocci")
FINDINGS = ("grab-only", "unreferenced", "review")
VERDICTS = ("pinned",) + FINDINGS + ("unanalyzed",)
PIN_FUNCS = ("get_task_mm(", "mm_alloc(")


class Progress:
    """Progress on stderr, for a terminal only: release, pass, files, time."""

    def __init__(self, quiet):
        self.on = not quiet and sys.stderr.isatty()
        self.release = ""
        self.started = time.monotonic()

    def __call__(self, msg):
        if self.on:
            print("mmaudit: %s[%5.1fs] %s" % (self.release and self.release + " ",
                                             time.monotonic() - self.started, msg),
                  file=sys.stderr, flush=True)


# Files spatch gave up on in this process, with the reason: {path: reason}.
FAILURES = {}


class FactCache:
    """Facts of one rule on one file, keyed by the content of both: a re-audit
    only hands spatch the files that changed."""

    def __init__(self, directory):
        self.directory = directory
        self.salts = {}

    def _salt(self, rule, defines):
        """What every key of one rule run shares: spatch, our code, the rule."""
        index = (rule, tuple(sorted(defines)))
        if index not in self.salts:
            h = hashlib.sha256(spatch.spatch_version().encode())
            for path in (spatch.MACRO_FILE, __file__, rule):
                with open(path, "rb") as f:
                    h.update(f.read())
            h.update(repr(index[1]).encode())
            self.salts[index] = h.digest()
        return self.salts[index]

    def key(self, tree, rule, defines, rel):
        h = hashlib.sha256(self._salt(rule, defines))
        with open(os.path.join(tree, rel), "rb") as f:
            h.update(f.read())
        return h.hexdigest()

    def _path(self, key):
        return os.path.join(self.directory, key[:2], key + ".json")

    def get(self, key):
        try:
            with open(self._path(key)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def put(self, key, facts):
        """Best effort: a cache that cannot be written only costs time."""
        path = self._path(key)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(facts, f)
            os.replace(tmp, path)
        except OSError:
            pass


CACHE = None    # a FactCache, when the user did not ask for --no-cache


def run_facts(tree, rule, files, jobs, timeout, defines=()):
    """Facts of a rule on FILES, from the cache or from spatch."""
    files = [f for f in files if utf8_name(f)]   # spatch's Python cannot take others
    if CACHE is None:
        return run_spatch_facts(tree, rule, files, jobs, timeout, defines)
    keys = {rel: CACHE.key(tree, rule, defines, rel) for rel in files}
    facts, missing = [], []
    for rel in files:
        cached = CACHE.get(keys[rel])
        if cached is None:
            missing.append(rel)
        else:       # the same content may sit under another name
            facts += [dict(f, file=rel) for f in cached]
    fresh = run_spatch_facts(tree, rule, missing, jobs, timeout, defines)
    by_file = {rel: [] for rel in missing}
    for f in fresh:
        by_file.setdefault(f["file"], []).append(f)
    for rel in missing:
        if rel not in FAILURES:          # a timeout may not repeat: never cached
            CACHE.put(keys[rel], by_file[rel])
    return facts + fresh


def run_spatch_facts(tree, rule, files, jobs, timeout, defines=()):
    """Run a fact rule over FILES (each its own group); return parsed facts."""
    if not files:
        return []
    # spatch runs in a scratch directory, never in the tree: with -D values
    # it writes a temporary copy of the rule into its working directory.
    with tempfile.TemporaryDirectory(prefix="mmaudit-") as tmp:
        groups = os.path.join(tmp, "groups")
        with open(groups, "w", errors="surrogateescape") as f:
            f.write("\n\n".join(os.path.join(tree, rel) for rel in files) + "\n")
        cmd = spatch.base_command(rule) + ["--file-groups", groups, "--timeout", str(timeout)]
        for d in defines:
            cmd += ["-D", d]
        if jobs > 1:
            cmd += ["--jobs", str(jobs), "--chunksize", "1"]
        # surrogateescape: file names that are not UTF-8 round-trip.
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                              errors="surrogateescape", env=dict(os.environ, TMPDIR=tmp))
    facts, failures = [], {}
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if line.startswith("MMAUDIT "):
            fact = json.loads(line[8:])
            fact["file"] = os.path.relpath(fact["file"], tree)
            facts.append(fact)
            continue
        m = re.match(r"EXN: (.*) in (.+)$", line) or re.match(r"timeout \(we abort\): ()(.+)$", line)
        if m:
            failures[os.path.relpath(m.group(2), tree)] = ("spatch timed out after %d s" % timeout
                                    if "imeout" in line else "spatch failed: " + m.group(1))
    if proc.returncode != 0 and not facts and not failures:
        err = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
        raise UsageError("spatch failed on %s: %s" % (os.path.basename(rule), err))
    FAILURES.update(failures)
    return facts


class SourceLines:
    """The stripped text of a source line, for evidence."""

    def __init__(self, tree):
        self.tree = tree
        self.files = {}

    def __call__(self, rel, line):
        if rel not in self.files:
            with open(os.path.join(self.tree, rel), "rb") as f:
                self.files[rel] = f.read().decode("utf-8", "replace").split("\n")
        lines = self.files[rel]
        return " ".join(lines[line - 1].split()) if 0 < line <= len(lines) else ""


def utf8_name(path):
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _key(fact):
    return (fact["file"], fact["line"], fact["col"])


def _step(file, line, what):
    return {"file": file, "line": line, "what": what}


def classify_store(store):
    """pinned / grab / bare, with the steps that show it."""
    line = store["lines"]
    steps = [_step(store["file"], store["line"], store["code"])]
    steps[0]["store"] = {"function": store["func"], "type": store["type"],
                         "field": store["field"],
                         "guard": sorted(set(c for c, _ in store.get("guards", []))),
                         "freed_before": store.get("freed_before")}
    if store.get("dropped"):
        for at in store["grabs"][:1]:
            steps.append(_step(store["file"], at, line(at) + " — mm_count taken"))
        steps.append(_step(store["file"], store["dropped"],
                           line(store["dropped"]) + " — the get_task_mm() reference is dropped: mm_count only"))
        return "grab", steps
    if store["value"].startswith(PIN_FUNCS):
        steps[0]["what"] += " — holds an mm_users reference"
        return "pinned", steps
    if not store.get("nopin"):
        for how, at in store["pins"][:1]:
            steps.insert(0, _step(store["file"], at, line(at) + " — %s() pins the stored mm" % how))
        steps[-1]["what"] += " — stored only after the pin"
        return "pinned", steps
    if store["grabs"]:
        grab = _step(store["file"], store["grabs"][0], line(store["grabs"][0]) + " — mmgrab(): mm_count only")
        steps.insert(0 if store["grabs"][0] < store["line"] else 1, grab)
        return "grab", steps
    steps[0]["what"] += " — no reference taken"
    return "bare", steps


def collect_stores(facts):
    stores = {}
    for f in facts:
        k = _key(f)
        if f["kind"] == "store":
            stores[k] = dict(file=f["file"], line=f["line"], col=f["col"], func=f["func"],
                             base=f["base"], value=f["value"], field=None, type=None,
                             pins=[], grabs=[])
    for f in facts:
        s = stores.get(_key(f))
        if s is None:
            continue
        kind = f["kind"]
        if kind == "type":
            s["type"] = f["type"]
        elif kind == "nopin":
            s["nopin"] = True
        elif kind == "pin" and f["at_func"] == s["func"] and f["at"] <= s["line"]:
            s["pins"].append((f["how"], f["at"]))
        elif kind == "grab":
            s["grabs"].append(f["at"])
        elif kind == "dropped":
            s["dropped"] = f["at"]
        elif kind == "guard":
            s.setdefault("guards", []).append((f["cond"], f["branch"]))
        elif kind == "freed_before":
            s["freed_before"] = min(f["at"], s.get("freed_before") or f["at"])
    for s in stores.values():
        s["pins"].sort(key=lambda p: -p[1])
        s["grabs"].sort()
    return stores


def _type_name(t):
    return "an anonymous struct" if t and "{" in t else t


def _separating_condition(classes):
    """The if () whose two branches hold the pinned and the unpinned stores."""
    sides = {}
    for (c, _), store in classes:
        for cond, branch in store.get("guards", []):
            sides.setdefault(cond, {}).setdefault(c == "pinned", set()).add(branch)
    for cond, by_pin in sorted(sides.items()):
        if len(by_pin) == 2 and all(len(b) == 1 for b in by_pin.values()) \
                and by_pin[True] != by_pin[False]:
            return "; separated by `%s`: pinned when it is %s" % (
                cond, "true" if by_pin[True] == {"then"} else "false")
    return ""


def judge_owner(site, owner, stores):
    """Verdict for a borrow of owner's field, from all stores of that field."""
    typ, field = owner["type"], owner["field"]
    mine = [s for s in stores if s["field"] == field and s["value"] != "NULL"
            and (s["type"] == typ if s["type"] else
                 (s["file"] == site["file"] and s["base"] == owner["base"]))]
    mine.sort(key=lambda s: (s["file"], s["line"], s["col"]))
    label = "%s.%s" % (_type_name(typ), field)
    if not mine:
        return ("review", "Low", "no store to %s was found in the tree" % label, [])
    classes = [(classify_store(s), s) for s in mine]
    for (c, sts), _ in classes:
        next(st for st in sts if "store" in st)["store"]["class"] = c
    kinds = collections.Counter(c for (c, _), _ in classes)
    steps = [st for (_, sts), _ in classes for st in sts]
    other_file = any(s["file"] != site["file"] for s in mine)
    confidence = "Moderate" if other_file or not all(s["type"] for s in mine) else "High"
    if kinds["pinned"] == len(mine):
        return ("pinned", confidence,
                "every store to %s holds an mm_users reference" % label, steps)
    if kinds["pinned"]:
        funcs = sorted({"%s()" % s["func"] for (c, _), s in classes if c != "pinned"})
        return ("review", "Moderate",
                "stores to %s are mixed: %d hold mm_users, %d do not (in %s)%s; "
                "check that the borrow runs only for objects set up by the pinned ones"
                % (label, kinds["pinned"], len(mine) - kinds["pinned"], ", ".join(funcs),
                   _separating_condition(classes)), steps)
    if kinds["bare"]:
        return ("unreferenced", confidence,
                "%d of %d stores to %s take no reference at all" % (kinds["bare"], len(mine), label),
                steps)
    return ("grab-only", confidence,
            "every store to %s holds mm_count only (mmgrab)" % label, steps)


def judge_callers(site, caller_facts, stores, code):
    """A borrowed parameter: combine the verdicts at the callers, one level up."""
    p = site["param"]
    facts = caller_facts.get((p["callee"], p["index"]), [])
    calls = {}
    for f in facts:
        if f["kind"] == "call":
            calls[_key(f)] = dict(file=f["file"], line=f["line"], func=f["func"], arg=f["arg"])
    for f in facts:
        c = calls.get(_key(f))
        if c is not None and f["kind"] in ("unpinned", "owner"):
            c[f["kind"]] = f
    if not calls:
        return ("review", "Low", "the mm is argument %d of %s() and no caller was found"
                % (p["index"] + 1, p["callee"]), [])
    verdicts, steps = [], []
    for c in sorted(calls.values(), key=lambda c: (c["file"], c["line"])):
        at = _step(c["file"], c["line"], "%s — caller %s()" % (code(c["file"], c["line"]), c["func"]))
        if "unpinned" not in c:
            verdicts.append("pinned")
            steps.append(dict(at, what=at["what"] + " holds an mm_users reference on every path"))
        elif "owner" in c:
            o = c["owner"]
            v, _, _, st = judge_owner(c, dict(type=o["type"], field=o["field"], base=o["base"]),
                                      list(stores.values()))
            verdicts.append(v)
            steps += st + [dict(at, what=at["what"] + " passes %s (%s)" % (c["arg"], v))]
        else:
            verdicts.append("review")
            steps.append(dict(at, what=at["what"] + " passes %s with no pin and no known owner" % c["arg"]))
    kinds = set(verdicts)
    what = "the mm is argument %d of %s(); %d caller(s)" % (p["index"] + 1, p["callee"], len(verdicts))
    if kinds == {"pinned"}:
        return "pinned", "Moderate", what + " all hold an mm_users reference", steps
    if "pinned" in kinds or "review" in kinds:
        return "review", "Low", what + ": " + ", ".join(verdicts), steps
    worst = "unreferenced" if "unreferenced" in kinds else "grab-only"
    return worst, "Moderate", what + " pass an mm without mm_users: " + ", ".join(verdicts), steps


def judge_sites(site_facts, stores, code, callers=None):
    sites = {}
    for f in site_facts:
        if f["kind"] == "site":
            sites[_key(f)] = dict(file=f["file"], line=f["line"], col=f["col"], func=f["func"],
                                  api=f["api"], mm=f["mm"], pins=[], releases=[])
    for f in site_facts:
        s = sites.get(_key(f))
        if s is None:
            continue
        if f["kind"] == "unpinned":
            s["unpinned"] = True
        elif f["kind"] == "pin" and f["at_func"] == s["func"] and f["at"] <= s["line"]:
            s["pins"].append((f["how"], f["at"]))
        elif f["kind"] == "release" and f["at_func"] == s["func"] and f["at"] <= s["line"]:
            s["releases"].append(f["at"])
        elif f["kind"] == "owner":
            s["owner"] = dict(type=f["type"], field=f["field"], base=f["base"],
                              alias_at=f["alias_at"])
        elif f["kind"] == "param":
            s["param"] = dict(name=f["name"], index=f["index"], callee=f["callee"])
    store_list = list(stores.values())
    results = []
    for s in sites.values():
        where = _step(s["file"], s["line"], "%s — the borrow, in %s()" % (code(s["file"], s["line"]), s["func"]))
        chain = []
        if not s.get("unpinned"):
            pins = sorted(s["pins"], key=lambda p: -p[1])
            for how, at in pins[:1]:
                chain.append(_step(s["file"], at, "%s — %s() pins the mm" % (code(s["file"], at), how)))
            verdict, conf, reason = "pinned", "High", "an mm_users reference is taken on every path to the borrow"
        else:
            for at in sorted(s["releases"])[-1:]:
                chain.append(_step(s["file"], at, "%s — the pin ends before the borrow" % code(s["file"], at)))
            owner = s.get("owner")
            if owner:
                if owner["alias_at"]:
                    chain.append(_step(s["file"], owner["alias_at"],
                                       "%s — local alias of the field" % code(s["file"], owner["alias_at"])))
                verdict, conf, reason, steps = judge_owner(s, owner, store_list)
                chain = steps + chain
                reason = "no mm_users reference in %s(); %s" % (s["func"], reason) \
                    if verdict != "pinned" else "the owning object pins the mm: " + reason
            elif s.get("param") and callers is not None:
                verdict, conf, reason, steps = callers(s)
                chain = steps + chain
            elif s.get("param"):
                p = s["param"]
                verdict, conf, reason = ("review", "Low",
                                         "the mm is argument %d (%s) of %s(); its callers were not followed"
                                         % (p["index"] + 1, p["name"], p["callee"]))
            else:
                verdict, conf, reason = ("review", "Low",
                                         "no mm_users reference on a path to the borrow, and the mm's origin is not a struct field or parameter")
        results.append(dict(file=s["file"], line=s["line"], column=s["col"], function=s["func"],
                            api=s["api"], mm=s["mm"], verdict=verdict, confidence=conf,
                            reason=reason, evidence=chain + [where]))
    return results


def in_shard(files, shard):
    """The deterministic share of FILES (sorted) that shard (i, n) audits."""
    if not shard:
        return list(files)
    index, count = shard
    return [f for k, f in enumerate(sorted(files)) if k % count == index - 1]


def audit(path, jobs=1, timeout=120, progress=None, shard=None):
    progress = progress or (lambda msg: None)
    tree, source = treemod.resolve(path)
    spatch_version = spatch.spatch_version()
    if hasattr(progress, "release"):
        progress.release = "Linux " + (treemod.kernel_version(tree) or source)
    progress("searching %s for borrows" % tree)
    searched, candidates, unreadable = scan.borrow_files(tree)
    if searched == 0 and not unreadable:
        raise UsageError("%s: no C files (*.c, *.h) to audit" % (path or tree))
    mine = in_shard(candidates, shard)
    textual = {rel: scan.textual_borrows(tree, rel) for rel in mine}
    to_parse = [rel for rel in mine if textual[rel]]
    progress("pass 1: call sites in %d of %d files" % (len(to_parse), searched))
    site_facts = run_facts(tree, SITES_RULE, to_parse, jobs, timeout)
    progress("pass 1: %d call sites" % sum(f["kind"] == "site" for f in site_facts))

    unpinned = {_key(f) for f in site_facts if f["kind"] == "unpinned"}
    with_owner = {_key(f) for f in site_facts if f["kind"] == "owner"}
    params = sorted({(f["callee"], f["index"]) for f in site_facts if f["kind"] == "param"
                     and _key(f) in unpinned and _key(f) not in with_owner})
    caller_facts = {}
    for callee, index in params:
        files = scan.caller_files(tree, callee)
        progress("pass 1b: callers of %s() in %d files" % (callee, len(files)))
        facts = run_facts(tree, CALLERS_RULE, files, jobs, timeout, defines=["callee=" + callee])
        calls = {_key(f) for f in facts if f["kind"] == "call" and f["index"] == index}
        caller_facts[(callee, index)] = [f for f in facts if _key(f) in calls]
    every_fact = site_facts + [f for fs in caller_facts.values() for f in fs]
    unpinned |= {_key(f) for f in every_fact if f["kind"] == "unpinned"}
    owners = [o for o in every_fact if o["kind"] == "owner" and _key(o) in unpinned]
    # A named struct is searched tree-wide by its tag; an anonymous one has
    # no tag, so only the borrow's own file is searched.
    field_tags = {}
    for o in owners:
        tags = field_tags.setdefault(o["field"], set())
        if o["type"] and "{" not in o["type"]:
            tags.add(o["type"].split()[-1])
    store_files = sorted(set(scan.store_files(tree, field_tags)) | {o["file"] for o in owners})
    stores = {}
    for field in sorted(field_tags):
        progress("pass 2: stores to .%s in %d files" % (field, len(store_files)))
        facts = run_facts(tree, STORES_RULE, store_files, jobs, timeout, defines=["fld=" + field])
        for k, s in collect_stores(facts).items():
            s["field"] = field
            stores[k + (field,)] = s
    progress("pass 2: %d stores" % len(stores))
    code = SourceLines(tree)
    for s in stores.values():
        s["code"] = code(s["file"], s["line"])
        s["lines"] = functools.partial(code, s["file"])
    results = judge_sites(site_facts, stores, code,
                          callers=lambda site: judge_callers(site, caller_facts, stores, code))
    failed = account_for_every_call(tree, textual, results)
    stats = {"files_searched": searched, "files_with_borrows": len(candidates),
             "files_parsed": len(to_parse) - len(failed), "files_failed": sorted(failed),
             "files_unreadable": unreadable, "store_files": len(store_files)}
    data = assemble(spatch_version, {"source": source, "version": treemod.kernel_version(tree)},
                    stats, results)
    if shard:
        data["shard"] = {"index": shard[0], "count": shard[1], "store_files": store_files}
    return data, tree


def account_for_every_call(tree, textual, results):
    """Coverage: every textual call appears in RESULTS, analyzed or not.

    Returns the files with a call spatch did not match."""
    matched = {(r["file"], r["line"]): r for r in results}
    failed = set()
    for rel, calls in sorted(textual.items()):
        for line, col, api, in_macro in calls:
            r = matched.get((rel, line))
            if in_macro:
                macro = scan.enclosing_macro(tree, rel, line)
                reason = ("the call is in the body of macro %s(); its invocations are not followed"
                          % macro)
                if r:
                    r.update(verdict="unanalyzed", confidence="Low", reason=reason, function=macro)
                    continue
            elif r:
                continue
            else:
                failed.add(rel)
                macro = None
                reason = FAILURES.get(rel) or (
                    "spatch did not match this call (parse failure)" if utf8_name(rel)
                    else "the file name is not UTF-8, which spatch cannot analyze")
            results.append(dict(file=rel, line=line, column=col, function=macro, api=api,
                                mm=None, verdict="unanalyzed", confidence="Low",
                                reason=reason, evidence=[]))
    return failed


def display_path(path):
    """A file name that is not UTF-8, shown with \\x escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def assemble(spatch_version, tree_info, stats, results):
    """The findings document; audit and merge both build it here."""
    for r in results:
        r["file"] = display_path(r["file"])
        for step in r["evidence"]:
            step["file"] = display_path(step["file"])
    for key in ("files_failed", "files_unreadable"):
        stats[key] = sorted(display_path(f) for f in stats[key])
    results = sorted(results, key=lambda r: (r["file"], r["line"], r["column"]))
    summary = collections.OrderedDict((v, 0) for v in VERDICTS)
    for r in results:
        summary[r["verdict"]] += 1
    return collections.OrderedDict([
        ("schema", "mmaudit-findings/1"),
        ("tool", {"name": "mmaudit", "version": VERSION, "spatch": spatch_version}),
        ("tree", tree_info),
        ("stats", stats),
        ("summary", dict(sites=len(results), **summary)),
        ("sites", results),
    ])


def merge(shards):
    """Join shard outputs into the document a single run writes."""
    if not shards:
        raise UsageError("nothing to merge")
    first = shards[0]
    count = first.get("shard", {}).get("count")
    seen = sorted(s.get("shard", {}).get("index", 0) for s in shards)
    if not count or seen != list(range(1, count + 1)):
        raise UsageError("merge needs shards 1..N of one run, got %s" % (seen,))
    for s in shards:
        if (s["tree"], s["tool"], s["shard"]["count"]) != (first["tree"], first["tool"], count):
            raise UsageError("shards come from different trees or tool versions")
    store_files = set()
    failed = set()
    parsed = 0
    for s in shards:
        store_files.update(s["shard"]["store_files"])
        failed.update(s["stats"]["files_failed"])
        parsed += s["stats"]["files_parsed"]
    stats = {"files_searched": first["stats"]["files_searched"],
             "files_with_borrows": first["stats"]["files_with_borrows"],
             "files_parsed": parsed, "files_failed": sorted(failed),
             "files_unreadable": first["stats"]["files_unreadable"],
             "store_files": len(store_files)}
    return assemble(first["tool"]["spatch"], first["tree"], stats,
                    [site for s in shards for site in s["sites"]])
