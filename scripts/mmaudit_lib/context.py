"""The context of one kthread_use_mm() borrow, and the put that must end
the mm_users pin taken for it.

mmput() may sleep, and when it drops the last mm_users it runs __mmput() ->
exit_aio(), which waits for every in-flight iocb of the mm.  So:

- kthread_unuse_mm() under a spinlock, rwlock, RCU, irqs or preemption off:
  mmput_async(), which does not sleep;
- a function that completes an iocb after the borrow (itself or through a
  function of the same file it calls): mmput_async(), or exit_aio() would
  wait for that very iocb;
- under a mutex or semaphore: mmput() after the unlock when the function
  releases it on every path after kthread_unuse_mm(), else mmput_async();
- otherwise mmput() right after kthread_unuse_mm().

mmput_async() must exist in the tree and, for a file that can be built as
a module, be exported; otherwise the answer is "needs a human".  The facts
come from cocci/borrow_context.cocci; a run that does not end with its
"done" fact, or that does not see the borrow, is incomplete (fail closed).
"""

import collections
import json
import os
import re
import subprocess
import tempfile

from . import spatch

RULE = os.path.join(spatch.COCCI_DIR, "borrow_context.cocci")
NEEDS_A_HUMAN = "needs a human"

# Lock and section calls of the rule, by kind; the atomic kinds forbid
# sleeping.  The rule's lists live in cocci/src/context.cocci; test_context
# checks that the two agree.
ATOMIC_KINDS = ("spinlock", "raw_spinlock", "rwlock", "local_lock", "irq", "bh",
                "preempt", "rcu")
SLEEPING_KINDS = ("mutex", "semaphore", "rwsem", "mmap_lock", "guard")
_KIND_PATTERNS = [
    (r"raw_spin_", "raw_spinlock"),
    (r"spin_", "spinlock"),
    (r"(read|write)_(un)?(try)?lock", "rwlock"),
    (r"local_(un)?lock", "local_lock"),
    (r"local_irq_", "irq"),
    (r"local_bh_", "bh"),
    (r"preempt_|(get|put)_cpu", "preempt"),
    (r"rcu_read_", "rcu"),
    (r"(rt_|ww_)?mutex_", "mutex"),
    (r"mmap_", "mmap_lock"),
    (r"(down|up)_(read|write)", "rwsem"),
    (r"down|up$", "semaphore"),
]
# cleanup.h guard classes (guard(K)(...)), by prefix.
_GUARD_KINDS = [
    ("raw_spinlock", "raw_spinlock"), ("spinlock", "spinlock"),
    ("read_lock", "rwlock"), ("write_lock", "rwlock"),
    ("local_lock", "local_lock"), ("irq", "irq"), ("preempt", "preempt"),
    ("rcu", "rcu"), ("mutex", "mutex"), ("rwsem", "rwsem"),
    ("mmap_read_lock", "mmap_lock"), ("mmap_write_lock", "mmap_lock"),
]
WORK_REGISTRARS = ("INIT_WORK", "INIT_DELAYED_WORK", "INIT_WORK_ONSTACK",
                   "INIT_DELAYED_WORK_ONSTACK", "INIT_RCU_WORK", "kthread_init_work",
                   "kthread_init_delayed_work", "DECLARE_WORK", "DECLARE_DELAYED_WORK")


def lock_kind(call):
    """The kind of section a lock or unlock call opens or closes."""
    m = re.match(r"guard\((\w+)\)$", call)
    if m:
        for prefix, kind in _GUARD_KINDS:
            if m.group(1).startswith(prefix):
                return kind
        return "guard"      # an unknown class: may sleep, released at scope end
    for pattern, kind in _KIND_PATTERNS:
        if re.match(pattern, call):
            return kind
    return "unknown"


def is_atomic(kind):
    return kind in ATOMIC_KINDS


# --- running the rule --------------------------------------------------------

def run_rule(tree, rel, function, timeout=120):
    """(facts of FUNCTION's file, complete, why not complete)."""
    path = os.path.join(tree, rel)
    cmd = spatch.base_command(RULE) + ["-D", "fn=" + function, "--timeout", str(timeout), path]
    # A scratch working directory, never the tree: with -D, spatch writes a
    # copy of the rule into its working directory.
    with tempfile.TemporaryDirectory(prefix="mmaudit-context-") as tmp:
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                                  errors="surrogateescape", timeout=timeout + 60,
                                  env=dict(os.environ, TMPDIR=tmp))
        except subprocess.TimeoutExpired:
            return [], False, "spatch did not finish %s in %d s" % (rel, timeout)
    facts, done, why = [], False, None
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if line.startswith("MMAUDIT "):
            try:
                fact = json.loads(line[8:])
            except ValueError:
                why = "spatch's output could not be read"
                continue
            if not isinstance(fact, dict):
                why = "spatch printed a malformed fact"
            elif fact.get("kind") == "done":
                done = done or any(os.path.abspath(f) == os.path.abspath(path)
                                   for f in fact.get("files", []) if isinstance(f, str))
            else:
                facts.append(fact)
        elif re.match(r"EXN: |timeout \(we abort\)", line):
            why = "spatch timed out after %d s on %s" % (timeout, rel) if "timeout" in line \
                else "spatch failed on %s: %s" % (rel, line[5:].strip())
    if proc.returncode != 0 and why is None:
        err = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
        why = "spatch stopped on %s: %s" % (rel, err)
    if not done and why is None:
        why = "spatch did not finish %s" % rel
    complete = done and why is None
    return (facts if complete else []), complete, why


# --- the tree: mmput_async() and modules ---------------------------------------

def _read(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None


def mmput_async_status(tree):
    """{"defined": bool|None, "exported": bool|None}: None when TREE is not
    a kernel tree (no kernel/fork.c), so nothing can be told."""
    fork = _read(os.path.join(tree, "kernel", "fork.c"))
    if fork is None:
        return {"defined": None, "exported": None}
    defined = bool(re.search(r"^void\s+mmput_async\s*\(", fork, re.M))
    exported = bool(re.search(r"^EXPORT_SYMBOL(_GPL)?\(mmput_async\);", fork, re.M))
    return {"defined": defined, "exported": defined and exported}


def _makefile_lines(tree, directory):
    for name in ("Makefile", "Kbuild"):
        text = _read(os.path.join(tree, directory, name))
        if text is not None:
            return text.replace("\\\n", " ").splitlines()
    return []


def _kconfig_type(tree, directory, symbol):
    """"tristate", "bool" or None: the type of SYMBOL, looked for in the
    Kconfig files of DIRECTORY and its parents, then anywhere."""
    pattern = re.compile(r"^(?:menu)?config\s+%s\s*$(.*?)(?=^\S|\Z)" % re.escape(symbol),
                         re.M | re.S)

    def look(path):
        text = _read(path)
        m = pattern.search(text) if text else None
        if m:
            t = re.search(r"^\s+(?:def_)?(tristate|bool)\b", m.group(1), re.M)
            return t.group(1) if t else None
        return False

    seen = set()
    d = directory
    while True:
        for name in sorted(os.listdir(os.path.join(tree, d or "."))) \
                if os.path.isdir(os.path.join(tree, d or ".")) else []:
            if name.startswith("Kconfig"):
                path = os.path.join(tree, d, name)
                seen.add(path)
                found = look(path)
                if found is not False:
                    return found
        if not d:
            break
        d = os.path.dirname(d)
    for root, dirs, files in os.walk(tree):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for name in files:
            path = os.path.join(root, name)
            if name.startswith("Kconfig") and path not in seen:
                found = look(path)
                if found is not False:
                    return found
    return None


def module_config(tree, rel):
    """{"module": bool|None, "config": "CONFIG_X"|None}: can REL be built
    as (part of) a module?  From its Makefile (a composite object, one
    level) and the Kconfig type of the symbol; None when that cannot be
    told."""
    directory, name = os.path.split(rel)
    lines = _makefile_lines(tree, directory)
    obj = name[:-2] + ".o"

    def builders(target):
        for line in lines:
            m = re.match(r"\s*([\w-]+?)-(y|m|objs|\$\(CONFIG_(\w+)\))\s*[:+]?=\s*(.*)$", line)
            if m and target in m.group(4).split():
                yield m.group(1), m.group(2), m.group(3)

    for owner, how, symbol in builders(obj):
        if owner == "obj":
            if how == "y":
                return {"module": False, "config": None}
            if how == "m":
                return {"module": True, "config": None}
            if symbol:
                kind = _kconfig_type(tree, directory, symbol)
                return {"module": None if kind is None else kind == "tristate",
                        "config": "CONFIG_" + symbol}
            continue
        for top, top_how, top_symbol in builders(owner + ".o"):
            if top != "obj":
                continue
            if top_how == "y":
                return {"module": False, "config": None}
            if top_how == "m":
                return {"module": True, "config": None}
            if top_symbol:
                kind = _kconfig_type(tree, directory, top_symbol)
                return {"module": None if kind is None else kind == "tristate",
                        "config": "CONFIG_" + top_symbol}
    return {"module": None, "config": None}


# --- the facts, joined -------------------------------------------------------

def _statement(lines, line):
    """The C text that starts at LINE (1-based), to the end of its
    statement (or of its balanced parentheses, for a condition)."""
    if not 0 < line <= len(lines):
        return ""
    text, depth = "", 0
    for i in range(line - 1, min(len(lines), line + 8)):
        part = lines[i].strip()
        text = (text + " " + part).strip()
        depth += part.count("(") - part.count(")")
        if depth <= 0 and re.search(r"[;{})]$", part):
            break
    return re.sub(r"\s+", " ", text).rstrip(";{ ").strip()


def _call_text(lines, line, col):
    """The call that starts at LINE, COL (0-based), to its closing
    parenthesis, as written."""
    if not 0 < line <= len(lines):
        return ""
    text = "\n".join(lines[line - 1:line + 8])[col:]
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                # guard(mutex)(&lock): the second parenthesis belongs to it
                if text.startswith("guard(") and text[i + 1:i + 2] == "(":
                    continue
                return re.sub(r"\s+", " ", text[:i + 1])
    return ""


def _section_text(s):
    return s.get("what") or "%s(%s)" % (s["call"], s["lock"])


def _sections(facts, function, points, unborrows, lines):
    """The sections that hold a borrow or an unborrow of POINTS."""
    held = collections.OrderedDict()
    for f in sorted((f for f in facts if f["kind"] in ("held", "guarded")
                     and f.get("func") == function and f["at"] in points),
                    key=lambda f: (f["line"], f["col"], f["at"])):
        call = f["call"]
        lock = f.get("lock", "")
        key = (call, lock, f["line"])
        s = held.setdefault(key, {"kind": lock_kind(call), "lock": lock, "line": f["line"],
                                  "unlock_line": None, "call": call,
                                  "what": _call_text(lines, f["line"], f["col"]),
                                  "at": set()})
        s["at"].add(f["at"])
    released = collections.defaultdict(set)
    for f in facts:
        if f["kind"] == "released" and f.get("func") == function:
            released[(f["at"], lock_kind(f["call"]), f["lock"])].add((f["line"], f["call"]))
    always = {}
    for f in facts:
        if f["kind"] == "always" and f.get("func") == function:
            always[(f["at"], f["lock"])] = f["lines"]
    bypassed = {(f["lock_line"], f["lock"], f["line"]) for f in facts
                if f["kind"] == "bypass" and f.get("func") == function}
    out = []
    for s in held.values():
        at = sorted(s.pop("at"))
        s["encloses"] = (["borrow"] if points[0] in at else []) + \
            (["unborrow"] if any(a in unborrows for a in at) else [])
        # Released after the unborrow when the section holds it, else after
        # the borrow.
        froms = [a for a in at if a in unborrows] or at
        after = {(ln, c) for a in froms for ln, c in released[(a, s["kind"], s["lock"])]
                 if ln > a}
        unlocks = sorted({ln for ln, _ in after})
        s["unlock_lines"] = unlocks
        s["unlock_line"] = unlocks[0] if unlocks else None
        s["unlock_call"] = min(after)[1] if after else None
        s["released_on_every_path"] = bool(froms) and "unborrow" in s["encloses"] and \
            all((a, s["lock"]) in always for a in froms if a in unborrows)
        # A path from the lock reaches this release without the borrow: a
        # put placed after it must be conditional.
        s["released_without_borrow"] = any((s["line"], s["lock"], ln) in bypassed
                                           for ln in unlocks)
        out.append(s)
    return out


def _chain(start, edges, goal):
    """Shortest chain of functions from one of START to one in GOAL."""
    queue = collections.deque([(g, [g]) for g in start])
    seen = set(start)
    while queue:
        g, path = queue.popleft()
        if g in goal:
            return path
        for h in sorted(edges.get(g, ())):
            if h not in seen:
                seen.add(h)
                queue.append((h, path + [h]))
    return None


def _aio(facts, function, borrow_line, lines):
    direct = sorted(f["line"] for f in facts if f["kind"] == "completes_after"
                    and f.get("func") == function and f["borrow"] == borrow_line)
    if direct:
        return {"value": True, "line": direct[0], "what": _statement(lines, direct[0]),
                "via": []}
    completes = collections.defaultdict(list)
    for f in facts:
        if f["kind"] == "completes" and f.get("func"):
            completes[f["func"]].append(f["line"])
    edges = collections.defaultdict(set)
    for f in facts:
        if f["kind"] == "call" and f.get("func"):
            edges[f["func"]].add(f["callee"])
    first_call = {}
    for f in facts:
        if f["kind"] == "calls_after" and f.get("func") == function \
                and f["borrow"] == borrow_line:
            first_call[f["callee"]] = min(first_call.get(f["callee"], f["line"]), f["line"])
    chain = _chain(sorted(first_call), edges, set(completes))
    if chain:
        at = min(completes[chain[-1]])
        return {"value": True, "line": at, "what": _statement(lines, at), "via": chain,
                "call_line": first_call[chain[0]]}
    return {"value": False, "line": None, "what": None, "via": []}


def _work_item(facts, function, lines):
    registered = collections.defaultdict(list)
    for f in facts:
        if f["kind"] == "registered":
            registered[f["callee"]].append(f)
    callers = collections.defaultdict(set)
    for f in facts:
        if f["kind"] == "call" and f.get("func") and f["func"] != f["callee"]:
            callers[f["callee"]].add(f["func"])
    chain = _chain([function], callers, set(registered))
    if not chain:
        return {"value": False, "line": None, "what": None, "how": None, "via": []}
    reg = min(registered[chain[-1]], key=lambda f: (f["line"], f["col"]))
    how = "work" if reg["how"] in WORK_REGISTRARS else "callback"
    return {"value": True, "line": reg["line"], "what": _statement(lines, reg["line"]),
            "how": how, "by": reg["how"], "via": chain[1:]}


def _fn(name):
    return name + "()"


def _mutex_placement(sleeping, unborrows):
    """The line after which mmput() goes when every sleeping section that
    holds the unborrow is released once, on every path, after it."""
    holding = [s for s in sleeping if "unborrow" in s["encloses"]]
    if not holding:
        return None, None
    for s in holding:
        if s["kind"] == "guard" or s["call"].startswith("guard(") or \
                not s["released_on_every_path"] or len(s["unlock_lines"]) != 1 or \
                s["unlock_lines"][0] < max(unborrows):
            return None, s
    last = max(holding, key=lambda s: s["unlock_lines"][0])
    return last["unlock_lines"][0], last


def borrow_context(tree, rel, function, borrow_line, timeout=120):
    """The context of the borrow at BORROW_LINE of FUNCTION in REL (relative
    to TREE), and the put that ends its pin.  See the module's docstring."""
    facts, complete, why_not = run_rule(tree, rel, function, timeout)
    text = _read(os.path.join(tree, rel)) or ""
    lines = text.split("\n")
    status = mmput_async_status(tree)
    result = {"file": rel, "function": function, "borrow_line": borrow_line,
              "complete": complete, "atomic": [], "sleeping_lock": [],
              "aio_completion": {"value": False, "line": None, "what": None, "via": []},
              "work_item": {"value": False, "line": None, "what": None, "how": None,
                            "via": []},
              "put": NEEDS_A_HUMAN, "put_after_line": None, "unborrow_lines": [],
              "mmput_async_exported": status["exported"], "module": None, "why": None}
    if not complete:
        result["why"] = "%s; the context of the borrow in %s is unknown, so the put " \
            "needs a human" % (why_not, _fn(function))
        return result
    borrows = [f for f in facts if f["kind"] == "borrow" and f.get("func") == function
               and f["line"] == borrow_line]
    if not borrows:
        result["complete"] = False
        result["why"] = "spatch did not see a borrow at line %d of %s (a parse failure, " \
            "a scoped_guard(), or no borrow there), so the put needs a human" % (
                borrow_line, _fn(function))
        return result
    api = borrows[0]["api"]
    unapi = "kthread_unuse_mm" if api == "kthread_use_mm" else "unuse_mm"
    result["borrow"] = {"line": borrow_line, "api": api, "mm": borrows[0]["mm"]}
    unborrows = sorted({f["line"] for f in facts if f["kind"] == "unborrow"
                        and f.get("func") == function and f["borrow"] == borrow_line})
    result["unborrow_lines"] = unborrows
    points = [borrow_line] + unborrows
    sections = _sections(facts, function, points, set(unborrows), lines)
    result["atomic"] = [s for s in sections if is_atomic(s["kind"])]
    result["sleeping_lock"] = [s for s in sections if not is_atomic(s["kind"])]
    aio = result["aio_completion"] = _aio(facts, function, borrow_line, lines)
    work = result["work_item"] = _work_item(facts, function, lines)

    f = _fn(function)
    if not unborrows:
        result["why"] = "no %s() follows the borrow at line %d in %s, so where the put " \
            "goes needs a human" % (unapi, borrow_line, f)
        return result
    u = unborrows[0]
    put, after, why = "mmput", u, None
    atomic_at_put = [s for s in result["atomic"] if "unborrow" in s["encloses"]]
    if atomic_at_put:
        s = atomic_at_put[0]
        put = "mmput_async"
        why = "%s calls %s() (line %d) under %s taken at line %d, where a sleeping " \
            "mmput() is a bug; mmput_async() does not sleep" % (
                f, unapi, u, _section_text(s), s["line"])
    elif aio["value"]:
        put = "mmput_async"
        if aio["via"]:
            chain = ["%s at line %d" % (_fn(aio["via"][0]), aio["call_line"])] + \
                [_fn(g) for g in aio["via"][1:]] + ["%s at line %d" % (aio["what"], aio["line"])]
            why = "%s can complete the iocb after the borrow (%s), so a final mmput() " \
                "would wait in exit_aio() for this very iocb; mmput_async() defers it" % (
                    f, " -> ".join(chain))
        else:
            why = "%s completes the iocb with %s (line %d) after the borrow, so a final " \
                "mmput() would wait in exit_aio() for this very iocb; mmput_async() " \
                "defers it" % (f, aio["what"], aio["line"])
    else:
        line, s = _mutex_placement(result["sleeping_lock"], unborrows)
        if line is not None:
            after = line
            why = "%s holds %s (line %d) across %s(); mmput() goes after its %s() at " \
                "line %d so that the mm teardown does not run under the driver lock" % (
                    f, _section_text(s), s["line"], unapi, s["unlock_call"], line)
            if s["released_without_borrow"]:
                why += ", and only when the borrow ran: a path that skips the borrow " \
                    "reaches that unlock too"
        elif s is not None:
            put = "mmput_async"
            if s["call"].startswith("guard("):
                how = "releases it only at the end of the block"
            elif not s["unlock_lines"]:
                how = "does not release it in the function"
            else:
                how = "does not release it at one place on every path after it"
            why = "%s holds %s (line %d) across %s() and %s; mmput_async() keeps the " \
                "mm teardown out of the lock" % (f, _section_text(s), s["line"], unapi, how)
        elif work["value"]:
            if work["via"]:
                role = "runs in a callback (%s, registered by %s at line %d)" % (
                    ", called by ".join(_fn(g) for g in work["via"]), work["what"], work["line"])
            else:
                role = "is a %s (%s, line %d)" % (
                    "work item" if work["how"] == "work" else "callback", work["what"],
                    work["line"])
            why = "%s %s, holds no lock at %s() (line %d) and completes no iocb after " \
                "the borrow, so mmput() may sleep right after it" % (f, role, unapi, u)
        else:
            why = "%s holds no lock at %s() (line %d) and completes no iocb after the " \
                "borrow, so mmput() may sleep right after it" % (f, unapi, u)
    module = result["module"] = module_config(tree, rel)
    if put == "mmput_async":
        if status["defined"] is False:
            put = NEEDS_A_HUMAN
            why += "; but this tree has no mmput_async() in kernel/fork.c, so the " \
                "put needs a human"
        elif status["exported"] is False and module["module"] is not False:
            put = NEEDS_A_HUMAN
            if module["module"]:
                built = "%s can be built as a module (%s is tristate)" % (
                    rel, module["config"]) if module["config"] else \
                    "%s is built as a module" % rel
            else:
                built = "whether %s can be built as a module cannot be told" % rel
            why += "; but mmput_async() is not exported to modules in this tree (no " \
                "EXPORT_SYMBOL_GPL(mmput_async) in kernel/fork.c) and %s, so the put " \
                "needs a human" % built
    result.update(put=put, put_after_line=after, why=why)
    return result
