// SPDX-License-Identifier: GPL-2.0-only
///
/// mmaudit pass 1: facts about every kthread_use_mm()/use_mm() call site.
/// Prints one "MMAUDIT <json>" line per fact; scripts/mmaudit joins them
/// with the stores found by audit_stores.cocci and decides the verdict.
///
// Confidence: n/a (fact extraction, not a checker)
// Copyright: (C) 2026 The mmaudit developers
// Comments: The borrow, pin and owner patterns are those of use_mm.cocci.
// Options: --no-includes --include-headers
// Generated from cocci/src/audit_sites.cocci.in, borrow.cocci, facts.cocci, helpers.py by scripts/gen-cocci: do not edit

@initialize:python@
@@

import json
import re

def emit(kind, p, **facts):
    """One fact, at position P: a line "MMAUDIT <json>"."""
    facts.update(kind=kind, file=p.file, line=int(p.line), col=int(p.column),
                 func=p.current_element)
    print("MMAUDIT " + json.dumps(facts, sort_keys=True), flush=True)

def shown(e):
    """spatch prints "f ( & a -> b [ i ] , ! c )"; show it as written in C."""
    e = re.sub(r" ?(->|\.|\[|\]|\() ?", r"\1", str(e))
    e = re.sub(r" ([),])", r"\1", e)
    # A prefix operator follows no operand (a name, a literal, ")" or "]").
    return re.sub(r"(?:^|(?<=[(\[])|(?<=[^\w)\]'\"] ))([&*!~-]) ", r"\1", e)

@site@
expression mm;
position p;
@@

\(kthread_use_mm@p\|use_mm@p\)(mm)

@api@
position site.p;
identifier borrow;
@@

borrow@p(...)

@script:python@
p << site.p;
mm << site.mm;
borrow << api.borrow;
@@

emit("site", p[0], api=str(borrow), mm=shown(mm))

// As in use_mm.cocci: a path from the entry, or from an mmput(), to the
// borrow that takes no mm_users reference on the same expression.
@unpinned exists@
expression site.mm;
position site.p;
@@

(
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
mmput(mm);
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
)

@script:python depends on unpinned@
p << site.p;
@@

emit("unpinned", p[0])

// The verdict needs a fact either way: a missing fact is never a pin.
@script:python depends on !unpinned@
p << site.p;
@@

emit("pinned", p[0])

// Evidence: the pins and releases on the same expression in the function.
@pin@
expression site.mm;
position pp;
@@

\(mmget@pp(mm)\|mmget_not_zero@pp(mm)\|mm = get_task_mm@pp(...)\|mm = mm_alloc@pp()\)

@pin_api@
position pin.pp;
identifier how;
@@

how@pp(...)

@script:python@
p << site.p;
pp << pin.pp;
how << pin_api.how;
@@

emit("pin", p[0], how=str(how), at=int(pp[0].line), at_func=pp[0].current_element)

@release@
expression site.mm;
position pr;
@@

mmput@pr(mm)

@script:python@
p << site.p;
pr << release.pr;
@@

emit("release", p[0], at=int(pr[0].line), at_func=pr[0].current_element)

// Where the borrowed mm comes from: a struct field, directly or through a
// local, or a parameter of the enclosing function.
@owner exists@
expression site.mm; position site.p;
type T, T2; T *xp; T xs; identifier fld, alias; position pa;
@@

(
\(kthread_use_mm@p\|use_mm@p\)(\(xp->fld\|xs.fld\));
|
mm@pa = \(xp->fld\|xs.fld\);
...
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
T2 alias@pa = \(xp->fld\|xs.fld\);
...
\(kthread_use_mm@p\|use_mm@p\)(alias);
)

@script:python depends on owner@
p << site.p;
T << owner.T;
fld << owner.fld;
xp << owner.xp = "";
xs << owner.xs = "";
pa << owner.pa = [];
@@

emit("owner", p[0], type=str(T), field=str(fld), base=shown(xp or xs),
     alias_at=int(pa[0].line) if pa else None)

@param exists@
position site.p;
identifier fn, pm;
parameter list[n] before;
type PT;
@@

fn(before, PT pm, ...) {
...
\(kthread_use_mm@p\|use_mm@p\)(pm);
...
}

@script:python depends on param@
p << site.p;
pm << param.pm;
n << param.n;
fn << param.fn;
@@

emit("param", p[0], name=str(pm), index=int(n), callee=str(fn))

// Last rule: the file was analyzed to the end.  A file without this fact
// (a timeout, a crash, a killed worker) is unanalyzed, whatever it printed.
@script:python@
@@

print("MMAUDIT " + json.dumps({"kind": "done", "files": cocci.files()}), flush=True)
