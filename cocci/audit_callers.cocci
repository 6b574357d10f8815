// SPDX-License-Identifier: GPL-2.0-only
///
/// mmaudit pass 1b: the callers of a function that borrows its mm
/// parameter, named with -D callee=NAME.  For each call: the argument, whether
/// it is pinned on every path to the call, and the struct field it comes
/// from.  Prints "MMAUDIT <json>" lines keyed by the call's position.
///
// Confidence: n/a (fact extraction, not a checker)
// Copyright: (C) 2026 The mmaudit developers
// Comments: The pin pattern is that of use_mm.cocci.
// Options: --no-includes --include-headers
// Generated from cocci/src/audit_callers.cocci.in, borrow.cocci, facts.cocci, helpers.py by scripts/gen-cocci: do not edit

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

@call@
identifier virtual.callee;
expression list[n] before;
expression arg;
position pc;
@@

callee@pc(before, arg, ...)

@script:python@
pc << call.pc;
n << call.n;
arg << call.arg;
@@

emit("call", pc[0], index=int(n), arg=shown(arg))

// Per argument: the facts of a call name the argument's index, so another
// argument of the same call never decides the mm's verdict.
@arg_unpinned exists@
identifier virtual.callee;
expression call.arg;
expression list call.before;
position call.pc;
@@

... when != \(mmget(arg)\|mmget_not_zero(arg)\|arg = get_task_mm(...)\|arg = mm_alloc()\)
callee@pc(before, arg, ...)

@script:python depends on arg_unpinned@
pc << call.pc;
n << call.n;
@@

emit("arg_unpinned", pc[0], index=int(n))

// The verdict needs a fact either way: a missing fact is never a pin.
@script:python depends on !arg_unpinned@
pc << call.pc;
n << call.n;
@@

emit("arg_pinned", pc[0], index=int(n))

// With -D sub=FLD: the callee borrows FLD of the object it is passed; is
// arg->FLD pinned on every path to the call?
@field_unpinned exists@
identifier virtual.callee, virtual.sub;
expression call.arg;
expression list call.before;
position call.pc;
@@

... when != \(mmget(arg->sub)\|mmget_not_zero(arg->sub)\|arg->sub = get_task_mm(...)\|arg->sub = mm_alloc()\)
    when != \(mmget(arg.sub)\|mmget_not_zero(arg.sub)\|arg.sub = get_task_mm(...)\|arg.sub = mm_alloc()\)
callee@pc(before, arg, ...)

@script:python depends on field_unpinned@
pc << call.pc;
n << call.n;
sub << virtual.sub;
@@

emit("field_unpinned", pc[0], index=int(n), field=str(sub))

@script:python depends on !field_unpinned@
pc << call.pc;
n << call.n;
sub << virtual.sub;
@@

emit("field_pinned", pc[0], index=int(n), field=str(sub))

@owner@
identifier virtual.callee;
expression list call.before;
position call.pc;
type T;
T *xp;
T xs;
identifier fld;
@@

callee@pc(before, \(xp->fld\|xs.fld\), ...)

@owner_alias exists@
identifier virtual.callee;
expression call.arg;
expression list call.before;
position call.pc;
type T, T2;
T *xp;
T xs;
identifier fld, alias;
position pa;
@@

(
arg@pa = \(xp->fld\|xs.fld\);
...
callee@pc(before, arg, ...);
|
T2 alias@pa = \(xp->fld\|xs.fld\);
...
callee@pc(before, alias, ...);
)

@script:python depends on owner@
pc << call.pc;
n << call.n;
T << owner.T;
fld << owner.fld;
xp << owner.xp = "";
xs << owner.xs = "";
@@

emit("arg_owner", pc[0], index=int(n), type=str(T), field=str(fld), base=shown(xp or xs),
     alias_at=None)

@script:python depends on owner_alias@
pc << call.pc;
n << call.n;
T << owner_alias.T;
fld << owner_alias.fld;
xp << owner_alias.xp = "";
xs << owner_alias.xs = "";
pa << owner_alias.pa;
@@

emit("arg_owner", pc[0], index=int(n), type=str(T), field=str(fld), base=shown(xp or xs),
     alias_at=int(pa[0].line))

// The argument is a parameter of the calling function: its own callers
// decide, one level further up (scripts/mmaudit follows up to a bound).
@arg_param exists@
identifier virtual.callee;
expression list call.before;
position call.pc;
identifier fn, pm;
parameter list[k] pbefore;
type PT;
@@

fn(pbefore, PT pm, ...) {
... when any
callee@pc(before, pm, ...)
... when any
}

@script:python@
pc << call.pc;
n << call.n;
k << arg_param.k;
fn << arg_param.fn;
@@

emit("arg_param", pc[0], index=int(n), param=int(k), caller=str(fn))

// Last rule: the file was analyzed to the end.  A file without this fact
// (a timeout, a crash, a killed worker) is unanalyzed, whatever it printed.
@script:python@
@@

print("MMAUDIT " + json.dumps({"kind": "done", "files": cocci.files()}), flush=True)
