// SPDX-License-Identifier: GPL-2.0-only
///
/// mmaudit pass 2: facts about every store to one struct field, named with
/// -D fld=NAME.  Prints one "MMAUDIT <json>" line per fact, keyed by the
/// position of the field name in the store; scripts/mmaudit classifies the
/// stores and joins them to the borrows found by audit_sites.cocci.
///
// Confidence: n/a (fact extraction, not a checker)
// Copyright: (C) 2026 The mmaudit developers
// Comments: The store patterns are those of use_mm.cocci.
// Options: --no-includes --include-headers
// Generated from cocci/src/audit_stores.cocci.in, borrow.cocci, facts.cocci, helpers.py, stores.cocci by scripts/gen-cocci: do not edit

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

def init_store(p, base, E, T):
    """The facts of a store in an initializer: by its value alone."""
    value = shown(E)
    emit("store", p, base=base, value=value)
    emit("type", p, type=str(T))
    emit("pinned" if re.match(r"(get_task_mm|mm_alloc)\(", value) else "nopin", p)

@store@
identifier virtual.fld;
expression X, E;
position ps;
@@

\(X->fld@ps\|X.fld@ps\) = E

@script:python@
ps << store.ps;
X << store.X;
E << store.E;
@@

emit("store", ps[0], base=shown(X), value=shown(E))

// The struct type, where spatch can tell it.
@typed@
identifier virtual.fld;
type T;
T *yp;
T ys;
position store.ps;
@@

\(yp->fld@ps\|ys.fld@ps\) = ...

@script:python@
ps << store.ps;
T << typed.T;
@@

emit("type", ps[0], type=str(T))

// A store one field further (x->f1.fld): the struct of f1 is resolved by
// scripts/mmaudit from the tree's declarations.
@typed_chain depends on !typed@
identifier virtual.fld;
type T;
T *yp;
T ys;
identifier f1;
position store.ps;
@@

\(yp->f1->fld@ps\|yp->f1.fld@ps\|ys.f1->fld@ps\|ys.f1.fld@ps\) = ...

@script:python@
ps << store.ps;
T << typed_chain.T;
f1 << typed_chain.f1;
@@

emit("type_chain", ps[0], root=str(T), via=str(f1))

// A path from the entry to the store that takes no mm_users reference on
// the stored value.
@nopin exists@
expression store.X, store.E;
identifier virtual.fld;
position store.ps;
@@

... when != \(mmget(E)\|mmget_not_zero(E)\)
\(X->fld@ps\|X.fld@ps\) = E;

@script:python depends on nopin@
ps << store.ps;
@@

emit("nopin", ps[0])

// The verdict needs a fact either way: a missing fact is never a pin.
@script:python depends on !nopin@
ps << store.ps;
@@

emit("pinned", ps[0])

@pinned_value@
expression store.E;
position pg;
@@

\(mmget@pg(E)\|mmget_not_zero@pg(E)\)

@pin_api@
position pinned_value.pg;
identifier how;
@@

how@pg(...)

@script:python@
ps << store.ps;
pg << pinned_value.pg;
how << pin_api.how;
@@

emit("pin", ps[0], how=str(how), at=int(pg[0].line), at_func=pg[0].current_element)

@grab_before exists@
expression store.X, store.E;
identifier virtual.fld;
position store.ps;
position pg;
@@

mmgrab@pg(..., E, ...)
...
\(X->fld@ps\|X.fld@ps\) = E;

@grab_after exists@
expression store.X, store.E;
identifier virtual.fld;
position store.ps;
position pg;
@@

\(X->fld@ps\|X.fld@ps\) = E;
...
mmgrab@pg(..., \(E\|X->fld\|X.fld\), ...)

@script:python@
ps << store.ps;
pg << grab_before.pg;
@@

emit("grab", ps[0], at=int(pg[0].line))

@script:python@
ps << store.ps;
pg << grab_after.pg;
@@

emit("grab", ps[0], at=int(pg[0].line))

// get_task_mm() then mmgrab() then mmput(): only mm_count is left.
@users_dropped exists@
expression store.X;
identifier virtual.fld;
position store.ps;
position pp;
@@

\(X->fld@ps\|X.fld@ps\) = get_task_mm(...);
...
mmgrab(\(X->fld\|X.fld\));
...
mmput@pp(\(X->fld\|X.fld\));

@script:python@
ps << store.ps;
pp << users_dropped.pp;
@@

emit("dropped", ps[0], at=int(pp[0].line))

// A holder that keeps mm_count for as long as the object keeps it: an SVA
// bond or an mmu notifier registered on the stored mm (each takes mmgrab()).
@indirect exists@
expression store.X, store.E;
identifier virtual.fld;
position store.ps;
position ph;
identifier hold = {iommu_sva_bind_device, mmu_notifier_register,
  __mmu_notifier_register, mmu_notifier_get, mmu_interval_notifier_insert};
@@

hold@ph(..., E, ...)
...
\(X->fld@ps\|X.fld@ps\) = E;

@indirect_after exists@
expression store.X, store.E;
identifier virtual.fld;
position store.ps;
position ph;
identifier hold = {iommu_sva_bind_device, mmu_notifier_register,
  __mmu_notifier_register, mmu_notifier_get, mmu_interval_notifier_insert};
@@

\(X->fld@ps\|X.fld@ps\) = E;
...
hold@ph(..., \(E\|X->fld\|X.fld\), ...)

@indirect_api@
position ph = {indirect.ph, indirect_after.ph};
identifier how;
@@

how@ph(...)

@script:python@
ps << store.ps;
ph << indirect_api.ph;
how << indirect_api.how;
@@

emit("indirect", ps[0], how=str(how), at=int(ph[0].line))

// The condition that guards the store, to show what separates mixed stores.
@guarded@
expression store.X, store.E;
identifier virtual.fld;
position store.ps;
expression C;
position pi;
@@

if@pi (C) { <+... \(X->fld@ps\|X.fld@ps\) = E ...+> } else { ... }

@guarded_else@
expression store.X, store.E;
identifier virtual.fld;
position store.ps;
expression C;
position pi;
@@

if@pi (C) { ... } else { <+... \(X->fld@ps\|X.fld@ps\) = E ...+> }

@script:python@
ps << store.ps;
C << guarded.C;
@@

emit("guard", ps[0], cond=shown(C), branch="then")

@script:python@
ps << store.ps;
C << guarded_else.C;
@@

emit("guard", ps[0], cond=shown(C), branch="else")

// A path from the storing function's entry that frees the owner before the
// store: kfree() of it, or bio_put() of the bio it lives in or was found
// from.  An mmdrop() added where the owner is freed must then cope with a
// field that was never set.
@store_fn@
expression store.X, E;
identifier virtual.fld, sf;
position store.ps;
@@

sf(...) { <+... \(X->fld@ps\|X.fld@ps\) = E ...+> }

@freed_before exists@
expression store.X;
identifier virtual.fld, f1, f2, f3, store_fn.sf;
position store.ps, pf;
@@

sf(...) {
... when != X->fld@ps = ...
\(kfree@pf(X)\|bio_put@pf(\(&X->f1\|&X->f1.f2\|&X->f1.f2.f3\))\);
... when any
}

// The owner found with container_of() is named by an identifier here; if
// it is not the store's base, the fact errs towards a guard.
@freed_before_bio exists@
expression B;
identifier virtual.fld, store_fn.sf, x;
type T;
position store.ps, pf;
@@

sf(...) {
... when any
(
x = container_of(B, T, ...);
|
T *x = container_of(B, T, ...);
)
... when != x->fld@ps = ...
bio_put@pf(B);
... when any
}

@script:python@
ps << store.ps;
pf << freed_before.pf;
@@

emit("freed_before", ps[0], at=int(pf[0].line))

@script:python@
ps << store.ps;
pf << freed_before_bio.pf;
@@

emit("freed_before", ps[0], at=int(pf[0].line))

// A store in a designated initializer: "T x = { .fld = E }" or a compound
// literal "(T){ .fld = E }".  Its value is all there is to it: a pin when
// it is get_task_mm() or mm_alloc(); mm_count when an mmgrab() of it or of
// x.fld follows the declaration.  A get taken before an initializer is not
// followed: such a store is "nopin" (a finding errs towards review).
@init_decl@
identifier virtual.fld;
expression E;
position ps;
type T;
identifier x;
@@

T x = { ..., .fld@ps = E, ... };

@script:python@
ps << init_decl.ps;
E << init_decl.E;
T << init_decl.T;
x << init_decl.x;
@@

init_store(ps[0], str(x), E, T)

@init_literal@
identifier virtual.fld;
expression E;
position ps;
type T;
@@

\( (T){ ..., .fld@ps = E, ... } \)

@script:python@
ps << init_literal.ps;
E << init_literal.E;
T << init_literal.T;
@@

init_store(ps[0], "(%s){...}" % T, E, T)

@init_grab exists@
identifier virtual.fld, init_decl.x;
expression init_decl.E;
position init_decl.ps, pg;
type init_decl.T;
@@

T x = { ..., .fld@ps = E, ... };
...
mmgrab@pg(\(E\|x.fld\))

@script:python@
ps << init_decl.ps;
pg << init_grab.pg;
@@

emit("grab", ps[0], at=int(pg[0].line))

// Last rule: the file was analyzed to the end.  A file without this fact
// (a timeout, a crash, a killed worker) is unanalyzed, whatever it printed.
@script:python@
@@

print("MMAUDIT " + json.dumps({"kind": "done", "files": cocci.files()}), flush=True)
