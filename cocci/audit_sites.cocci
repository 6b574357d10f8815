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
// Generated from cocci/src/audit_sites.cocci.in, borrow.cocci, context.cocci, facts.cocci, helpers.py by scripts/gen-cocci: do not edit

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

# Function summaries of the file being analyzed (reset for each file):
# helpers that return the result of mmget_not_zero() on a parameter or a
# field of it {name: (parameter index, field or None)}, and functions that
# return a get_task_mm() reference.
PIN_HELPERS = {}
MM_SOURCES = set()
COMPLETERS = set()

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

// A pin on an alias of the mm (a local assigned from the field, or the field
// from the local) is a pin of the borrowed mm: a fact per alias.
@alias_assign exists@
expression site.mm; position site.p; expression A;
@@

(
mm = A;
|
A = mm;
)
...
\(kthread_use_mm@p\|use_mm@p\)(mm)

@alias_decl exists@
position site.p; expression A; type TA; identifier i;
@@

TA i = A;
...
\(kthread_use_mm@p\|use_mm@p\)(i)

@alias_local exists@
expression site.mm; position site.p; type TA; identifier A;
@@

TA A = mm;
...
\(kthread_use_mm@p\|use_mm@p\)(mm)

@unpinned_alias exists@
expression site.mm; position site.p;
expression A = {alias_assign.A, alias_decl.A};
@@

(
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
    when != \(mmget(A)\|mmget_not_zero(A)\|A = get_task_mm(...)\|A = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
\(mmput(mm)\|mmput(A)\);
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
    when != \(mmget(A)\|mmget_not_zero(A)\|A = get_task_mm(...)\|A = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
)

@unpinned_alias_local exists@
expression site.mm; position site.p;
identifier alias_local.A;
@@

(
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
    when != \(mmget(A)\|mmget_not_zero(A)\|A = get_task_mm(...)\|A = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
\(mmput(mm)\|mmput(A)\);
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
    when != \(mmget(A)\|mmget_not_zero(A)\|A = get_task_mm(...)\|A = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
)

@script:python depends on alias_assign && unpinned_alias@
p << site.p;
A << alias_assign.A;
@@

emit("alias_unpinned", p[0], alias=shown(A))

@script:python depends on alias_assign && !unpinned_alias@
p << site.p;
A << alias_assign.A;
@@

emit("alias_pinned", p[0], alias=shown(A))

@script:python depends on alias_decl && unpinned_alias@
p << site.p;
A << alias_decl.A;
@@

emit("alias_unpinned", p[0], alias=shown(A))

@script:python depends on alias_decl && !unpinned_alias@
p << site.p;
A << alias_decl.A;
@@

emit("alias_pinned", p[0], alias=shown(A))

@script:python depends on alias_local && unpinned_alias_local@
p << site.p;
A << alias_local.A;
@@

emit("alias_unpinned", p[0], alias=shown(A))

@script:python depends on alias_local && !unpinned_alias_local@
p << site.p;
A << alias_local.A;
@@

emit("alias_pinned", p[0], alias=shown(A))

// Summaries of this file's functions, for the borrows below.
@script:python@
@@

PIN_HELPERS.clear()
MM_SOURCES.clear()
COMPLETERS.clear()

@pin_helper_def@
identifier fn, pm, fld;
parameter list[k] pb;
type PT;
position pd;
@@

fn@pd(pb, PT pm, ...) {
... when any
return \(mmget_not_zero(pm)\|mmget_not_zero(pm->fld)\|mmget_not_zero(pm.fld)\);
}

@script:python@
fn << pin_helper_def.fn;
k << pin_helper_def.k;
fld << pin_helper_def.fld = "";
@@

PIN_HELPERS[str(fn)] = (int(k), str(fld) if fld else None)

// Anchored on the get, not on every function of the file.
@mm_source_def@
position pg;
identifier x;
@@

(
return get_task_mm@pg(...);
|
x = get_task_mm@pg(...);
...
return x;
)

@script:python@
pg << mm_source_def.pg;
@@

MM_SOURCES.add(pg[0].current_element)

// A path to the borrow that no pin of this file's summaries covers: a
// helper's call on the mm itself, or on the object whose field it is, or
// the mm taken from a get_task_mm() wrapper.
@unpinned_summary exists@
expression site.mm;
position site.p;
identifier pf : script:python() { str(pf) in PIN_HELPERS };
identifier sf : script:python() { str(sf) in MM_SOURCES };
@@

(
... when != pf(..., mm, ...)
    when != mm = sf(...)
    when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
mmput(mm);
... when != pf(..., mm, ...)
    when != mm = sf(...)
    when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
)

@field_form@
position site.p;
expression X;
identifier fld;
@@

\(kthread_use_mm@p\|use_mm@p\)(\(X->fld\|X.fld\));

@unpinned_summary_field exists@
position site.p;
expression field_form.X;
identifier field_form.fld;
identifier pf : script:python(fld) { str(pf) in PIN_HELPERS and PIN_HELPERS[str(pf)][1] == str(fld) };
@@

(
... when != pf(..., X, ...)
    when != pf(..., &X, ...)
    when != \(mmget(X->fld)\|mmget_not_zero(X->fld)\|X->fld = get_task_mm(...)\|X->fld = mm_alloc()\)
    when != \(mmget(X.fld)\|mmget_not_zero(X.fld)\|X.fld = get_task_mm(...)\|X.fld = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(\(X->fld\|X.fld\));
|
mmput(\(X->fld\|X.fld\));
... when != pf(..., X, ...)
    when != pf(..., &X, ...)
    when != \(mmget(X->fld)\|mmget_not_zero(X->fld)\|X->fld = get_task_mm(...)\|X->fld = mm_alloc()\)
    when != \(mmget(X.fld)\|mmget_not_zero(X.fld)\|X.fld = get_task_mm(...)\|X.fld = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(\(X->fld\|X.fld\));
)

@script:python depends on unpinned && (!unpinned_summary || field_form && !unpinned_summary_field)@
p << site.p;
@@

emit("summary_pinned", p[0])

@summary_used exists@
position site.p, pc;
identifier pf : script:python() { str(pf) in PIN_HELPERS or str(pf) in MM_SOURCES };
@@

pf@pc(...)
... when any
\(kthread_use_mm@p\|use_mm@p\)(...)

@script:python@
p << site.p;
pc << summary_used.pc;
pf << summary_used.pf;
@@

emit("pin", p[0], how=str(pf), at=int(pc[0].line), at_func=pc[0].current_element)

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

// The running task's own mm, or the mm a kernel thread runs on lazily
// (current->active_mm), directly or through a local.
@current_origin exists@
expression site.mm; position site.p; identifier fld; type TA; identifier i;
position pa; symbol current;
@@

(
\(kthread_use_mm@p\|use_mm@p\)(current->fld);
|
mm@pa = current->fld;
...
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
TA i@pa = current->fld;
...
\(kthread_use_mm@p\|use_mm@p\)(i);
)

@script:python@
p << site.p;
fld << current_origin.fld;
pa << current_origin.pa = [];
@@

emit("current", p[0], field=str(fld), alias_at=int(pa[0].line) if pa else None)

// An mmput() of a local mm on a path to the borrow with no pin, and no new
// value, after it.  (An expression with a field or an index can name
// another object on the next turn of a loop: those are not followed.)
@released exists@
identifier mm;
position site.p, pr;
expression E;
@@

mmput@pr(mm);
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
    when != mm = E
\(kthread_use_mm@p\|use_mm@p\)(mm);

@script:python@
p << site.p;
pr << released.pr;
@@

emit("released", p[0], at=int(pr[0].line))

// The pin must hold to the unborrow: an mmput() of the mm between the
// borrow and kthread_unuse_mm() ends it while the mm is still in use.
@put_in_region exists@
expression site.mm; position site.p, pp;
@@

\(kthread_use_mm@p\|use_mm@p\)(mm);
... when != \(kthread_unuse_mm\|unuse_mm\)(mm)
mmput@pp(mm);
... when != \(kthread_use_mm\|use_mm\)(mm)
\(kthread_unuse_mm\|unuse_mm\)(mm);

@script:python@
p << site.p;
pp << put_in_region.pp;
@@

emit("put_in_region", p[0], at=int(pp[0].line))

// The borrow on the failure branch of mmget_not_zero() (mm_users was
// already 0: the mm is dying), or after a get whose result nothing tests.
@failed_get exists@
expression site.mm; position site.p, pg; statement S; identifier l;
@@

(
if (!mmget_not_zero@pg(mm)) { <+... \(kthread_use_mm@p\|use_mm@p\)(mm); ...+> }
|
if (!mmget_not_zero@pg(mm)) \(kthread_use_mm@p\|use_mm@p\)(mm);
|
if (mmget_not_zero@pg(mm)) S else { <+... \(kthread_use_mm@p\|use_mm@p\)(mm); ...+> }
|
if (mmget_not_zero@pg(mm)) \( return ...; \| { ... return ...; } \| goto l; \| { ... goto l; } \)
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
)

@script:python@
p << site.p;
pg << failed_get.pg;
@@

emit("failed_get", p[0], at=int(pg[0].line))

@unchecked_get exists@
expression site.mm; position site.p, pg; expression X; type T; identifier Y;
@@

(
mmget_not_zero@pg(mm);
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
X = mmget_not_zero@pg(mm);
... when != X
    when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
T Y = mmget_not_zero@pg(mm);
... when != Y
    when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
)

@script:python@
p << site.p;
pg << unchecked_get.pg;
@@

emit("unchecked_get", p[0], at=int(pg[0].line))

// The put that waits on itself: an mmput() of the mm after the borrow, then
// an iocb completion, in the borrowing function (or in a function it calls
// after the put, or in one that calls it).  If that mmput() drops the last
// mm_users, __mmput() -> exit_aio() waits for every in-flight iocb of the
// mm, this one included.
@put_completes exists@
expression site.mm; position site.p, pp, pk; expression E; expression list I;
@@

\(kthread_use_mm@p\|use_mm@p\)(mm);
...
mmput@pp(mm);
... when any
\(E->ki_complete@pk(I)\|ki_complete@pk(I)\|aio_complete@pk(I)\)

@script:python@
p << site.p;
pp << put_completes.pp;
pk << put_completes.pk;
@@

emit("put_completes", p[0], put=int(pp[0].line), at=int(pk[0].line))

@put_after exists@
expression site.mm; position site.p, pp;
@@

\(kthread_use_mm@p\|use_mm@p\)(mm);
...
mmput@pp(mm);

@script:python@
p << site.p;
pp << put_after.pp;
@@

emit("put_after", p[0], at=int(pp[0].line))

@completes@
expression E; expression list I; position pk;
@@

\(E->ki_complete@pk(I)\|ki_complete@pk(I)\|aio_complete@pk(I)\)

@script:python@
pk << completes.pk;
@@

emit("completes", pk[0])
COMPLETERS.add(pk[0].current_element)

// Calls after the put of functions of this file that complete an iocb.
@put_calls exists@
expression site.mm; position site.p, pp, pc;
identifier g : script:python() { str(g) in COMPLETERS };
@@

\(kthread_use_mm@p\|use_mm@p\)(mm);
...
mmput@pp(mm);
... when any
g@pc(...)

@script:python@
p << site.p;
pp << put_calls.pp;
pc << put_calls.pc;
g << put_calls.g;
@@

emit("put_calls", p[0], put=int(pp[0].line), at=int(pc[0].line), callee=str(g))


@script:python site_fn@
p << site.p;
fn;
@@

coccinelle.fn = p[0].current_element

@called_completes depends on completes exists@
identifier site_fn.fn; position pc, pk; expression E; expression list I;
@@

fn@pc(...)
... when any
\(E->ki_complete@pk(I)\|ki_complete@pk(I)\|aio_complete@pk(I)\)

@script:python@
p << site.p;
pc << called_completes.pc;
pk << called_completes.pk;
@@

emit("called_completes", p[0], call=int(pc[0].line), at=int(pk[0].line),
     caller=pc[0].current_element)

// An owner one field further: x->f1->fld, whose f1 is typed in a header
// spatch does not read (--no-includes); scripts/mmaudit resolves f1's
// struct from the tree's declarations.
@owner_chain exists@
expression site.mm; position site.p;
type T, T2; T *xp; T xs; identifier f1, fld, alias; position pa;
@@

(
\(kthread_use_mm@p\|use_mm@p\)(\(xp->f1->fld\|xp->f1.fld\|xs.f1->fld\|xs.f1.fld\));
|
mm@pa = \(xp->f1->fld\|xp->f1.fld\|xs.f1->fld\|xs.f1.fld\);
...
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
T2 alias@pa = \(xp->f1->fld\|xp->f1.fld\|xs.f1->fld\|xs.f1.fld\);
...
\(kthread_use_mm@p\|use_mm@p\)(alias);
)

@script:python depends on !owner@
p << site.p;
T << owner_chain.T;
f1 << owner_chain.f1;
fld << owner_chain.fld;
xp << owner_chain.xp = "";
xs << owner_chain.xs = "";
pa << owner_chain.pa = [];
@@

emit("owner_chain", p[0], root=str(T), via=str(f1), field=str(fld),
     base="%s%s%s" % (shown(xp or xs), "->" if xp else ".", f1),
     alias_at=int(pa[0].line) if pa else None)

// The owner is a parameter's object (arg->fld): the callers may pin the
// field of the object they pass before the call.
@owner_param exists@
position site.p;
identifier fn, pm, fld;
parameter list[n] before;
type PT;
@@

fn(before, PT pm, ...) {
... when any
\(kthread_use_mm@p\|use_mm@p\)(\(pm->fld\|pm.fld\));
... when any
}

@script:python@
p << site.p;
pm << owner_param.pm;
n << owner_param.n;
fn << owner_param.fn;
fld << owner_param.fld;
@@

emit("owner_param", p[0], name=str(pm), index=int(n), callee=str(fn), field=str(fld))

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
