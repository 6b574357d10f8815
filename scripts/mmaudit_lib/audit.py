"""The whole-tree audit: run the fact rules, follow each borrowed mm to its
stores, and decide a verdict with an evidence chain."""

import collections
import functools
import os
import sys
import time

from . import VERSION, UsageError, coverage as coveragemod, facts as factsmod, gitsel, scan, \
    spatch, risk as riskmod, tree as treemod, types as typesmod

SITES_RULE = os.path.join(spatch.COCCI_DIR, "audit_sites.cocci")
STORES_RULE = os.path.join(spatch.COCCI_DIR, "audit_stores.cocci")
CALLERS_RULE = os.path.join(spatch.COCCI_DIR, "audit_callers.cocci")
FINDINGS = ("grab-only", "unreferenced", "review")
# How many caller levels above a borrowed parameter the audit follows.
MAX_CALLER_DEPTH = 4
VERDICTS = ("pinned",) + FINDINGS + ("unanalyzed",)
PIN_FUNCS = ("get_task_mm(", "mm_alloc(")


class Progress:
    """Progress on stderr, for a terminal only: release, pass, files, time."""

    def __init__(self, quiet):
        self.on = not quiet and sys.stderr.isatty()
        self.quiet = quiet
        self.release = ""
        self.started = time.monotonic()

    def note(self, msg):
        """Something the user should know even off a terminal (not with -q)."""
        if not self.quiet:
            print("mmaudit: note: %s" % msg, file=sys.stderr, flush=True)

    def __call__(self, msg):
        if self.on:
            print("mmaudit: %s[%5.1fs] %s" % (self.release and self.release + " ",
                                             time.monotonic() - self.started, msg),
                  file=sys.stderr, flush=True)


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
    if bool(store.get("nopin")) == bool(store.get("pinned")):
        steps[0]["what"] += " — its facts are incomplete"
        return "unknown", steps
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
    if store.get("indirect"):
        how, at = min(store["indirect"], key=lambda h: h[1])
        held = _step(store["file"], at, line(at) + " — %s() holds mm_count for the object "
                     "(%s): mm_count only" % (how, "an SVA bond" if "sva" in how else "an mmu notifier"))
        steps.insert(0 if at < store["line"] else 1, held)
        steps[0 if at > store["line"] else 1]["indirect"] = how
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
        elif kind == "type_chain":
            s["chain"] = (f["root"], f["via"])
        elif kind in ("nopin", "pinned"):
            s[kind] = True
        elif kind == "pin" and f["at_func"] == s["func"] and f["at"] <= s["line"]:
            s["pins"].append((f["how"], f["at"]))
        elif kind == "grab":
            s["grabs"].append(f["at"])
        elif kind == "dropped":
            s["dropped"] = f["at"]
        elif kind == "indirect":
            s.setdefault("indirect", []).append((f["how"], f["at"]))
        elif kind == "guard":
            s.setdefault("guards", []).append((f["cond"], f["branch"]))
        elif kind == "freed_before":
            s["freed_before"] = min(f["at"], s.get("freed_before") or f["at"])
    for s in stores.values():
        s["pins"].sort(key=lambda p: -p[1])
        s["grabs"].sort()
    return stores


def _files_and_reasons(failed, most=3):
    parts = ["%s (%s)" % (f, why) for f, why in sorted(failed.items())[:most]]
    if len(failed) > most:
        parts.append("and %d more" % (len(failed) - most))
    return ", ".join(parts)


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


def judge_owner(site, owner, stores, failed=None):
    """Verdict for a borrow of owner's field, from all stores of that field.
    FAILED: {field: {file: reason}} of the store searches that did not finish."""
    typ, field = owner["type"], owner["field"]
    tag = typ.split()[-1] if typ and "{" not in typ else None
    # A file that cannot hold a store to this struct (it never names its
    # tag) does not matter to it.
    missed = {rel: why for rel, (why, tags) in (failed or {}).get(field, {}).items()
              if tag is None or tags is None or tag in tags}
    if missed:
        return ("unanalyzed", "Low", "the stores to %s.%s could not all be analyzed: %s"
                % (_type_name(typ), field, _files_and_reasons(missed)), [])
    mine = [s for s in stores if s["field"] == field and s["value"] != "NULL"
            and (s["type"] == typ if s["type"] else
                 (s["file"] == site["file"] and s["base"] == owner["base"]))]
    mine.sort(key=lambda s: (s["file"], s["line"], s["col"]))
    label = "%s.%s" % (_type_name(typ), field)
    # A store whose struct spatch could not tell, in a file that names this
    # struct, might be one of its stores: the verdict cannot rest without it.
    unsure = sorted((s["file"], s["line"]) for s in stores
                    if s["field"] == field and not s["type"] and s["value"] != "NULL"
                    and s not in mine and tag and tag in (s.get("names") or ()))
    if unsure:
        return ("unanalyzed", "Low", "%d store(s) to .%s of a struct spatch could not tell "
                "may be stores to %s: %s" % (len(unsure), field, label,
                                             ", ".join("%s:%d" % u for u in unsure[:3])), [])
    if not mine:
        return ("review", "Low", "no store to %s was found in the tree" % label, [])
    classes = [(classify_store(s), s) for s in mine]
    for (c, sts), _ in classes:
        next(st for st in sts if "store" in st)["store"]["class"] = c
    kinds = collections.Counter(c for (c, _), _ in classes)
    steps = [st for (_, sts), _ in classes for st in sts]
    if kinds["unknown"]:
        return ("unanalyzed", "Low", "the facts of %d store(s) to %s are incomplete"
                % (kinds["unknown"], label), steps)
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
    holders = sorted({"%s()" % st["indirect"] for st in steps if st.get("indirect")})
    return ("grab-only", confidence, "every store to %s holds mm_count only (%s)"
            % (label, ", ".join(["mmgrab"] * (len(holders) < len(mine)) + holders)), steps)


def judge_callers(site, caller_facts, stores, code, failed_callers=None, failed_stores=None,
                  depth=1, seen=()):
    """A borrowed parameter: combine the verdicts at the callers, and at
    their callers when they pass a parameter of their own on, up to
    MAX_CALLER_DEPTH levels."""
    p = site["param"]
    if (p["callee"], p["index"]) not in caller_facts and depth > 1:
        return ("review", "Low", "the mm is argument %d of %s(), whose callers are more than "
                "%d levels above the borrow: not followed" % (p["index"] + 1, p["callee"],
                                                              MAX_CALLER_DEPTH), [])
    missed = (failed_callers or {}).get((p["callee"], p["index"]))
    if missed:
        return ("unanalyzed", "Low", "the mm is argument %d of %s(); its callers could not all "
                "be analyzed: %s" % (p["index"] + 1, p["callee"], _files_and_reasons(missed)), [])
    facts = caller_facts.get((p["callee"], p["index"]), [])
    calls = {}
    for f in facts:
        if f["kind"] == "call":
            calls[_key(f)] = dict(file=f["file"], line=f["line"], func=f["func"], arg=f["arg"])
    for f in facts:
        c = calls.get(_key(f))
        if c is not None and f["kind"] in ("arg_unpinned", "arg_pinned", "arg_owner",
                                           "arg_param") and f["index"] == p["index"]:
            c[f["kind"][4:]] = f
    if not calls:
        return ("review", "Low", "the mm is argument %d of %s() and no caller was found"
                % (p["index"] + 1, p["callee"]), [])
    verdicts, steps = [], []
    for c in sorted(calls.values(), key=lambda c: (c["file"], c["line"])):
        at = _step(c["file"], c["line"], "%s — caller %s()" % (code(c["file"], c["line"]), c["func"]))
        if ("unpinned" in c) == ("pinned" in c):
            verdicts.append("unanalyzed")
            steps.append(dict(at, what=at["what"] + ": the facts of this call are incomplete"))
        elif "unpinned" not in c:
            verdicts.append("pinned")
            steps.append(dict(at, what=at["what"] + " holds an mm_users reference on %s on every "
                              "path" % c["arg"]))
        elif "owner" in c:
            o = c["owner"]
            v, _, _, st = judge_owner(c, dict(type=o["type"], field=o["field"], base=o["base"]),
                                      list(stores.values()), failed_stores)
            verdicts.append(v)
            steps += st + [dict(at, what=at["what"] + " passes %s (%s)" % (c["arg"], v))]
        elif "param" in c and (c["param"]["caller"], c["param"]["param"]) not in seen:
            up = dict(callee=c["param"]["caller"], index=c["param"]["param"])
            v, _, why, st = judge_callers(dict(param=up), caller_facts, stores, code,
                                          failed_callers, failed_stores, depth + 1,
                                          tuple(seen) + ((p["callee"], p["index"]),))
            verdicts.append(v)
            steps += st + [dict(at, what=at["what"] + " passes its own parameter %s: %s"
                                % (c["arg"], why))]
        else:
            verdicts.append("review")
            steps.append(dict(at, what=at["what"] + " passes %s with no pin and no known owner" % c["arg"]))
    kinds = set(verdicts)
    what = "the mm is argument %d of %s(); %d caller(s)" % (p["index"] + 1, p["callee"], len(verdicts))
    if kinds == {"pinned"}:
        return "pinned", "Moderate", what + " all hold an mm_users reference", steps
    if "unanalyzed" in kinds:
        return "unanalyzed", "Low", what + ": " + ", ".join(verdicts), steps
    if "pinned" in kinds or "review" in kinds:
        return "review", "Low", what + ": " + ", ".join(verdicts), steps
    worst = "unreferenced" if "unreferenced" in kinds else "grab-only"
    return worst, "Moderate", what + " pass an mm without mm_users: " + ", ".join(verdicts), steps


def judge_field_callers(site, field_facts, failed_callers, code):
    """The callers of a function that borrows FIELD of a parameter's object:
    (all pin it, steps, how many do) or None when there are none to judge."""
    op = site["facts"]["owner_param"][0]
    key = (op["callee"], op["index"], op["field"])
    if key not in field_facts or failed_callers.get(key):
        return None
    calls = {}
    for f in field_facts[key]:
        if f["kind"] == "call" and f["index"] == op["index"]:
            calls[_key(f)] = dict(file=f["file"], line=f["line"], func=f["func"], arg=f["arg"])
    for f in field_facts[key]:
        c = calls.get(_key(f))
        if c is not None and f["kind"] in ("field_pinned", "field_unpinned") \
                and f["index"] == op["index"]:
            c[f["kind"]] = True
    if not calls or any(("field_pinned" in c) == ("field_unpinned" in c) for c in calls.values()):
        return None
    steps = [_step(c["file"], c["line"], "%s — caller %s() %s %s->%s on every path"
                   % (code(c["file"], c["line"]), c["func"],
                      "pins" if "field_pinned" in c else "does not pin", c["arg"], op["field"]))
             for c in sorted(calls.values(), key=lambda c: (c["file"], c["line"]))]
    pinned = sum("field_pinned" in c for c in calls.values())
    return pinned == len(calls), steps, "%d of %d caller(s) of %s() pin %s->%s before the call" % (
        pinned, len(calls), op["callee"], op["name"], op["field"])


def judge_sites(site_facts, stores, code, callers=None, failed_stores=None, field_callers=None):
    sites = {}
    completing = collections.defaultdict(set)     # file: functions that complete an iocb
    for f in site_facts:
        if f["kind"] == "site":
            sites[_key(f)] = dict(file=f["file"], line=f["line"], col=f["col"], func=f["func"],
                                  api=f["api"], mm=f["mm"], pins=[], releases=[],
                                  facts=collections.defaultdict(list))
        elif f["kind"] == "completes" and f["func"]:
            completing[f["file"]].add(f["func"])
    for f in site_facts:
        s = sites.get(_key(f))
        if s is None:
            continue
        if f["kind"] in ("unpinned", "pinned"):
            s[f["kind"]] = True
        elif f["kind"] in ("alias_pinned", "summary_pinned", "owner_param", "current",
                           "released", "put_after", "put_completes",
                           "put_calls", "called_completes", "put_in_region", "failed_get",
                           "unchecked_get"):
            s["facts"][f["kind"]].append(f)
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
        lost = _pin_lost(s)
        if bool(s.get("unpinned")) == bool(s.get("pinned")):
            verdict, conf, reason = ("unanalyzed", "Low",
                                     "the facts of this site are incomplete (a damaged cache entry or spatch output)")
        elif lost:
            at, why = lost
            chain.append(_step(s["file"], at, "%s — %s" % (code(s["file"], at), why)))
            verdict, conf, reason = "unreferenced", "High", "%s (line %d)" % (why, at)
        elif not s.get("unpinned"):
            pins = sorted(s["pins"], key=lambda p: -p[1])
            for how, at in pins[:1]:
                chain.append(_step(s["file"], at, "%s — %s() pins the mm" % (code(s["file"], at), how)))
            verdict, conf, reason = "pinned", "High", "an mm_users reference is taken on every path to the borrow"
        elif s["facts"]["alias_pinned"]:
            alias = min(f["alias"] for f in s["facts"]["alias_pinned"])
            verdict, conf, reason = ("pinned", "High",
                                     "an mm_users reference is taken on every path to the borrow, "
                                     "on %s, which holds the same mm" % alias)
        elif s["facts"]["summary_pinned"]:
            used = sorted(s["pins"], key=lambda p: -p[1])[:1]
            for how, at in used:
                chain.append(_step(s["file"], at, "%s — %s() pins the mm (it returns "
                                   "mmget_not_zero() or get_task_mm())" % (code(s["file"], at), how)))
            verdict, conf, reason = ("pinned", "Moderate",
                                     "an mm_users reference is taken on every path to the borrow, "
                                     "by %s" % ", ".join("%s() at line %d" % u for u in used)
                                     if used else "an mm_users reference is taken on every path "
                                     "to the borrow, by a helper of this file")
        elif _own_pin_released(s):
            at = _own_pin_released(s)
            chain.append(_step(s["file"], at, "%s — the mm_users reference ends here" % code(s["file"], at)))
            verdict, conf, reason = ("unreferenced", "Moderate",
                                     "mmput() at line %d ends the mm_users reference on a path to "
                                     "the borrow, and nothing pins the mm again before it" % at)
        elif _current_origin(s):
            verdict, conf, reason, steps = _current_origin(s)
            chain = [_step(s["file"], at, code(s["file"], at) + " — local alias") for at in steps]
        else:
            for at in sorted(s["releases"])[-1:]:
                chain.append(_step(s["file"], at, "%s — the pin ends before the borrow" % code(s["file"], at)))
            owner = s.get("owner")
            if owner:
                if owner["alias_at"]:
                    chain.append(_step(s["file"], owner["alias_at"],
                                       "%s — local alias of the field" % code(s["file"], owner["alias_at"])))
                verdict, conf, reason, steps = judge_owner(s, owner, store_list, failed_stores)
                chain = steps + chain
                reason = "no mm_users reference in %s(); %s" % (s["func"], reason) \
                    if verdict != "pinned" else "the owning object pins the mm: " + reason
                if verdict == "unanalyzed":
                    conf = "Low"
                by_callers = field_callers(s) if field_callers and \
                    s["facts"]["owner_param"] else None
                if by_callers and by_callers[0] and verdict != "pinned":
                    # Every caller pins the field of the object it passes.
                    chain = by_callers[1]
                    verdict, conf, reason = ("pinned", "Moderate", "%s; the stores alone say "
                                             "%s (%s)" % (by_callers[2], verdict, reason))
                elif by_callers:
                    chain = by_callers[1] + chain
                    reason += "; %s" % by_callers[2]
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
        hazards = put_in_completion(s, completing[s["file"]], code) if verdict == "pinned" else []
        results.append(dict(file=s["file"], line=s["line"], column=s["col"], function=s["func"],
                            api=s["api"], mm=s["mm"], verdict=verdict, confidence=conf,
                            reason=reason, evidence=chain + [where], hazards=hazards))
    return results


def _pin_lost(site):
    """(line, why) when the get in this function does not hold the borrow:
    the borrow is on its failure branch, its result is never tested, or an
    mmput() ends the pin inside the borrowed region.  None otherwise."""
    facts = site["facts"]
    if facts["failed_get"]:
        return (min(f["at"] for f in facts["failed_get"]),
                "the borrow is on the failure branch of mmget_not_zero(): mm_users was "
                "already 0, the mm is being torn down")
    if facts["unchecked_get"]:
        return (min(f["at"] for f in facts["unchecked_get"]),
                "the result of mmget_not_zero() is not tested before the borrow, which "
                "runs whether the get succeeded or not")
    if facts["put_in_region"]:
        return (min(f["at"] for f in facts["put_in_region"]),
                "mmput() ends the mm_users reference before kthread_unuse_mm(), while "
                "the mm is still borrowed")
    return None


def _own_pin_released(site):
    """The line of the mmput() that ends, before the borrow, the reference a
    get_task_mm() or mm_alloc() of this function gave the mm; or None.  (A
    balanced mmget()/mmput() leaves the mm as the callers or owner hold it.)"""
    released = [f["at"] for f in site["facts"]["released"]]
    owned = [at for how, at in site["pins"] if how in ("get_task_mm", "mm_alloc")]
    ends = [at for at in released if any(o < at for o in owned)]
    return max(ends) if ends else None


def _current_origin(site):
    """(verdict, confidence, reason, alias lines) for a borrow of the running
    task's mm or active_mm, or None."""
    facts = site["facts"]["current"]
    fields = {f["field"] for f in facts}
    aliases = sorted({f["alias_at"] for f in facts if f["alias_at"]})
    if fields == {"active_mm"}:
        # A kernel thread has no mm of its own: active_mm is the mm it runs
        # on lazily, kept by mm_count (mmgrab() in the context switch) at most.
        return ("grab-only", "Moderate",
                "the mm is current->active_mm, the lazy-TLB mm of the running kernel thread: "
                "it is held through mm_count at most, never mm_users", aliases)
    if fields == {"mm"}:
        return ("pinned", "Moderate",
                "the mm is current->mm, held by the running task's own mm_users reference "
                "until the task exits: pinned only while the borrow ends before %s() returns "
                "to the task" % site["func"], aliases)
    return None


def put_in_completion(site, completing, code):
    """The put that waits on itself: after the borrow, an mmput() that can
    drop the last mm_users while the function's own iocb is in flight."""
    facts = site["facts"]
    found = []      # (put line, completion line, how)
    for f in facts["put_completes"]:
        found.append((f["put"], f["at"], "%s() completes the iocb at line %d"
                      % (site["func"], f["at"])))
    for f in facts["put_calls"]:
        if f["callee"] in completing and f["callee"] != site["func"]:
            found.append((f["put"], f["at"], "%s() then calls %s() at line %d, which completes "
                          "the iocb" % (site["func"], f["callee"], f["at"])))
    puts = sorted({f["at"] for f in facts["put_after"]})
    for f in facts["called_completes"]:
        for put in puts[:1]:
            found.append((put, f["at"], "%s() calls %s() at line %d and completes the iocb "
                          "at line %d" % (f["caller"], site["func"], f["call"], f["at"])))
    if not found:
        return []
    put, at, how = min(found)
    return [{"kind": "put-in-completion",
             "reason": "mmput() at line %d can drop the last mm_users reference while the "
                       "iocb is still in flight (%s): __mmput() -> exit_aio() waits for every "
                       "in-flight iocb of the mm, this one included, so the worker would wait "
                       "for itself; mmput_async() defers the teardown" % (put, how),
             "evidence": [_step(site["file"], put, "%s — the put, before the iocb completes"
                                % code(site["file"], put)),
                          _step(site["file"], at, "%s — the iocb's completion" % code(site["file"], at))]}]


def in_shard(files, shard):
    """The deterministic share of FILES (sorted) that shard (i, n) audits."""
    if not shard:
        return list(files)
    index, count = shard
    return [f for k, f in enumerate(sorted(files)) if k % count == index - 1]


def audit(path, jobs=1, timeout=120, progress=None, shard=None, cache=None, risk=True,
          use_git=True, select=None, pruned=True):
    """Audit PATH; CACHE is a facts.FactCache, or None to run spatch on every file.
    USE_GIT: in a git work tree, let git tell which files changed (gitsel).
    SELECT: how to find the candidate files, if not that way.  PRUNED:
    spatch sees only the function bodies a rule can match in (prune.py)."""
    progress = progress or (lambda msg: None)
    tree, source = treemod.resolve(path)
    spatch_version = spatch.spatch_version()
    with factsmod.FactRunner(tree, jobs, timeout, cache, pruned) as runner:
        return _audit(path, tree, source, spatch_version, runner, progress, shard, risk,
                      use_git, select)


def _audit(path, tree, source, spatch_version, runner, progress, shard, risk, use_git, select):
    jobs, timeout, cache = runner.jobs, runner.timeout, runner.cache
    # spatch parses the rule of pass 1 while the tree is searched.
    early = runner.start_early(SITES_RULE)
    if hasattr(progress, "release"):
        progress.release = "Linux " + (treemod.kernel_version(tree) or source)
    progress("searching %s for borrows" % tree)
    if select is None:
        select = gitsel.open_tree(tree, jobs, os.path.dirname(cache.directory) if cache else None) \
            if use_git else scan.Walk(tree, jobs)
    if select.note:
        getattr(progress, "note", progress)(select.note)
    searched, candidates, unreadable = scan.borrow_files(tree, jobs, select)
    unreadable = set(unreadable)
    if searched == 0 and not unreadable:
        raise UsageError("%s: no C files (*.c, *.h) to audit" % (path or tree))
    mine = in_shard(candidates, shard)
    textual = {rel: scan.textual_borrows(tree, rel) for rel in mine}
    to_parse = [rel for rel in mine if textual[rel]]
    progress("pass 1: call sites in %d of %d files" % (len(to_parse), searched))
    site_facts, _ = runner.run(SITES_RULE, to_parse, started=early)
    site_facts = only_code(site_facts, textual)
    progress("pass 1: %d call sites" % sum(f["kind"] == "site" for f in site_facts))

    structs = typesmod.StructIndex(tree)
    site_facts += resolve_chains(site_facts, structs)
    unpinned = {_key(f) for f in site_facts if f["kind"] == "unpinned"}
    with_owner = {_key(f) for f in site_facts if f["kind"] == "owner"}
    params = sorted({(f["callee"], f["index"]) for f in site_facts if f["kind"] == "param"
                     and _key(f) in unpinned and _key(f) not in with_owner})
    caller_facts, failed_callers = {}, {}
    cover = coveragemod.Coverage(tree, timeout)
    queue = [(callee, index, 1) for callee, index in params]
    while queue:
        callee, index, depth = queue.pop(0)
        if (callee, index) in caller_facts:
            continue
        files = scan.caller_files(tree, callee, unreadable, jobs, select)
        progress("pass 1b: callers of %s() in %d files" % (callee, len(files)))
        facts, failed = runner.run(CALLERS_RULE, files, defines=["callee=" + callee])
        failed_callers[(callee, index)] = failed
        calls = {_key(f) for f in facts if f["kind"] == "call" and f["index"] == index}
        mine = [f for f in facts if _key(f) in calls and f.get("index") == index]
        caller_facts[(callee, index)] = mine
        # A caller that passes its own parameter on, unpinned: its callers.
        pinned_or_owned = {_key(f) for f in mine if f["kind"] in ("arg_pinned", "arg_owner")}
        if depth < MAX_CALLER_DEPTH:
            queue += [(f["caller"], f["param"], depth + 1) for f in mine
                      if f["kind"] == "arg_param" and _key(f) not in pinned_or_owned]
        cover.account(files, facts, "call",
                      functools.partial(coveragemod.call_candidates, tree, callee=callee),
                      "a call of %s()" % callee, "the call", failed)
    every_fact = site_facts + [f for fs in caller_facts.values() for f in fs]
    unpinned |= {_key(f) for f in every_fact if f["kind"] in ("unpinned", "arg_unpinned")}
    owners = [o for o in every_fact if o["kind"] in ("owner", "arg_owner") and _key(o) in unpinned]
    # A named struct is searched tree-wide by its tag; an anonymous one has
    # no tag, so only the borrow's own file is searched.
    field_tags = {}
    for o in owners:
        tags = field_tags.setdefault(o["field"], set())
        if o["type"] and "{" not in o["type"]:
            tags.add(o["type"].split()[-1])
    # The callers of functions that borrow a field of a parameter's object
    # (pass 1c) are found in the same walk of the tree as the store files.
    wanted = [f for f in site_facts if f["kind"] == "owner_param" and _key(f) in unpinned]
    fields = sorted(field_tags)
    field_keys = sorted({(f["callee"], f["index"], f["field"]) for f in wanted})
    # Pass 2 and pass 1c parse their rules while the tree is searched: the
    # runs run_all() takes first, JOBS of them.
    passes = [(STORES_RULE, ["fld=" + field]) for field in fields] + \
        [(CALLERS_RULE, ["callee=" + callee, "sub=" + field]) for callee, _, field in field_keys]
    early = [runner.start_early(rule, defines) if k < jobs else None
             for k, (rule, defines) in enumerate(passes)]
    found, callers_of = scan.store_files(tree, field_tags, unreadable,
                                         callees=sorted({f["callee"] for f in wanted}), jobs=jobs,
                                         select=select)
    store_files = sorted(set(found) | {o["file"] for o in owners})
    # Pass 2 (the stores of each field) and pass 1c (the callers of each
    # function that borrows a parameter's field) do not wait on each other.
    for field in fields:
        progress("pass 2: stores to .%s in %d files" % (field, len(store_files)))
    for callee, _, field in field_keys:
        progress("pass 1c: callers of %s() for .%s in %d files" % (callee, field,
                                                                    len(callers_of[callee])))
    files = [store_files] * len(fields) + [callers_of[callee] for callee, _, _ in field_keys]
    runs = runner.run_all([(rule, these, defines, started) for (rule, defines), these, started
                           in zip(passes, files, early)])
    stores, failed_stores = {}, {}
    for field, (facts, failed) in zip(fields, runs):
        failed_stores[field] = failed
        for k, s in collect_stores(facts).items():
            s["field"] = field
            if s["type"] is None and s.get("chain"):
                tag = structs.field_struct(_tag(s["chain"][0]), s["chain"][1], near=s["file"])
                s["type"] = "struct " + tag if tag else None
            stores[k + (field,)] = s
        cover.account(store_files, facts, "store",
                      functools.partial(coveragemod.store_candidates, tree, field=field),
                      "a store to .%s" % field, "the store", failed)
    for field, files in failed_stores.items():
        files.update((rel, (why, scan.tags_in(tree, rel, field_tags[field])))
                     for rel, why in files.items())
    for s in stores.values():
        if not s["type"]:
            s["names"] = scan.tags_in(tree, s["file"], field_tags[s["field"]])
    progress("pass 2: %d stores" % len(stores))
    code = SourceLines(tree)
    for s in stores.values():
        s["code"] = code(s["file"], s["line"])
        s["lines"] = functools.partial(code, s["file"])
    callers = functools.partial(judge_callers, caller_facts=caller_facts, stores=stores,
                                code=code, failed_callers=failed_callers,
                                failed_stores=failed_stores)
    field_facts = {}
    for key, (facts, failed) in zip(field_keys, runs[len(fields):]):
        field_facts[key], failed_callers[key] = facts, failed
        # A call spatch did not see: the callers cannot decide.
        cover.account(callers_of[key[0]], facts, "call",
                      functools.partial(coveragemod.call_candidates, tree, callee=key[0]),
                      "a call of %s()" % key[0], "the call", failed)
    results = judge_sites(site_facts, stores, code, callers=callers, failed_stores=failed_stores,
                          field_callers=functools.partial(judge_field_callers,
                                                          field_facts=field_facts,
                                                          failed_callers=failed_callers,
                                                          code=code))
    failed = account_for_every_call(tree, textual, results, runner.failed, cover.errors_of)
    judged = sorted({r["file"] for r in results if r["verdict"] != "pinned"})
    if risk:
        progress("risk: the architectures that build %d file(s)" % len(judged))
        risks = riskmod.assess(tree, judged, jobs=jobs, cache=cache)
    else:
        risks = {rel: {"risk": "unknown", "arches_affected": [], "arches_building": [],
                       "risk_reason": "not computed (--no-risk)"} for rel in judged}
    for r in results:
        r.update(risks.get(r["file"]) if r["verdict"] != "pinned" and r["file"] in risks else
                 {"risk": None, "arches_affected": [], "arches_building": [], "risk_reason": None})
    failed.update(runner.failed)
    for rel, why in cover.file_reasons().items():
        failed[rel] = "; ".join(filter(None, (failed.get(rel), why)))
    stats = {"files_searched": searched, "files_with_borrows": len(candidates),
             "files_parsed": len(set(to_parse) - set(failed)),
             "files_failed": [{"file": rel, "reason": why} for rel, why in sorted(failed.items())],
             "files_unreadable": sorted(unreadable), "store_files": len(store_files)}
    data = assemble(spatch_version, {"source": source, "version": treemod.kernel_version(tree)},
                    stats, results)
    if shard:
        data["shard"] = {"index": shard[0], "count": shard[1], "store_files": store_files}
    return data, tree


def _tag(typ):
    """The tag of "struct x" (or "struct x *"), else None."""
    words = typ.replace("*", " ").split()
    return words[1] if len(words) == 2 and words[0] in ("struct", "union") else None


def resolve_chains(site_facts, structs):
    """Owner facts for borrows of x->f1->fld whose f1 is typed in a header:
    the struct of f1 comes from the tree's declarations (STRUCTS)."""
    owned = {_key(f) for f in site_facts if f["kind"] == "owner"}
    out = []
    for f in site_facts:
        if f["kind"] == "owner_chain" and _key(f) not in owned:
            tag = structs.field_struct(_tag(f["root"]) or "", f["via"], near=f["file"])
            if tag:
                out.append(dict(f, kind="owner", type="struct " + tag))
                for k in ("root", "via"):
                    del out[-1][k]
                owned.add(_key(f))
    return out


def only_code(site_facts, textual):
    """The facts of the calls the compiler sees: spatch does not know that a
    backslash continues a // comment, nor always skip #if 0."""
    lines = {(rel, line) for rel, calls in textual.items() for line, _, _, _ in calls}
    # "completes" facts are about the file, keyed by the completion itself.
    return [f for f in site_facts if (f["file"], f["line"]) in lines
            or (f["kind"] == "completes" and f["file"] in textual)]


def account_for_every_call(tree, textual, results, why_failed, errors_of=lambda rel: []):
    """Coverage: every textual call appears in RESULTS, analyzed or not.
    WHY_FAILED: {file: reason} of the files spatch did not finish;
    ERRORS_OF(file): spatch's parse errors in it.

    Returns the files with a call spatch did not match."""
    matched = {(r["file"], r["line"]): r for r in results}
    failed = {}
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
                macro = None
                reason = why_failed.get(rel) or "spatch did not match this call: " + \
                    coveragemod.why_unseen(tree, rel, line, set(), errors_of)
                failed[rel] = reason
            results.append(dict(file=rel, line=line, column=col, function=macro, api=api,
                                mm=None, verdict="unanalyzed", confidence="Low",
                                reason=reason, evidence=[], hazards=[]))
    return failed


def display_path(path):
    """A file name that is not UTF-8, shown with \\x escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def assemble(spatch_version, tree_info, stats, results):
    """The findings document; audit and merge both build it here."""
    for r in results:       # names from the tree may reach any text
        for key in ("file", "function", "mm", "reason", "risk_reason"):
            if r.get(key) is not None:
                r[key] = display_path(r[key])
        for step in r["evidence"] + [st for h in r["hazards"] for st in h["evidence"]]:
            step["file"] = display_path(step["file"])
            step["what"] = display_path(step["what"])
        for h in r["hazards"]:
            h["reason"] = display_path(h["reason"])
    stats["files_failed"] = sorted(({"file": display_path(f["file"]), "reason": display_path(f["reason"])}
                                    for f in stats["files_failed"]), key=lambda f: f["file"])
    stats["files_unreadable"] = sorted(display_path(f) for f in stats["files_unreadable"])
    results = sorted(results, key=lambda r: (r["file"], r["line"], r["column"]))
    summary = collections.OrderedDict((v, 0) for v in VERDICTS)
    for r in results:
        summary[r["verdict"]] += 1
    return collections.OrderedDict([
        ("schema", "mmaudit-findings/2"),
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
    failed = {}
    parsed = 0
    sites = set()
    for s in shards:
        mine = {(x["file"], x["line"], x["column"]) for x in s["sites"]}
        if sites & mine:
            raise UsageError("shards overlap: %s:%d:%d is in two of them" % min(sites & mine))
        sites |= mine
    for s in shards:
        store_files.update(s["shard"]["store_files"])
        for f in s["stats"]["files_failed"]:
            failed[f["file"]] = "; ".join(filter(None, (failed.get(f["file"]), f["reason"])))
        parsed += s["stats"]["files_parsed"]
    stats = {"files_searched": first["stats"]["files_searched"],
             "files_with_borrows": first["stats"]["files_with_borrows"],
             "files_parsed": parsed,
             "files_failed": [{"file": f, "reason": why} for f, why in sorted(failed.items())],
             "files_unreadable": first["stats"]["files_unreadable"],
             "store_files": len(store_files)}
    return assemble(first["tool"]["spatch"], first["tree"], stats,
                    [site for s in shards for site in s["sites"]])
