// SPDX-License-Identifier: GPL-2.0-only
///
/// Find kthread_use_mm() callers that hold no mm_users reference (mmget(),
/// mmget_not_zero(), get_task_mm(), mm_alloc()) on the borrowed mm.
///
// Confidence: Moderate
// Copyright: (C) 2026 The mmaudit Project
// URL: https://lore.kernel.org/all/20200203201745.29986-2-aarcange@redhat.com/
// Comments: mmgrab() pins mm_count only (some architectures skip remote TLB
//  flushes when mm_users is 1 or 0).  An mm read from a
//  struct field is judged by the stores to that field in this file; with no
//  such store, or no field, it is "unresolved" (Low).  Mixed stores are not
//  reported.  use_mm() (before v5.8) is matched too.  Patch mode wraps
//  grab-only borrows with no lock, RCU, irqs-off or iocb completion around.
// Options: --no-includes --include-headers
// Requires: 1.1.0
// Generated from cocci/src/use_mm.cocci.in, borrow.cocci, context.cocci, helpers.py, stores.cocci by scripts/gen-cocci: do not edit

virtual patch
virtual context
virtual org
virtual report

@initialize:python@
@@

import re

def shown(e):
    """spatch prints "f ( & a -> b [ i ] , ! c )"; show it as written in C."""
    e = re.sub(r" ?(->|\.|\[|\]|\() ?", r"\1", str(e))
    e = re.sub(r" ([),])", r"\1", e)
    # A prefix operator follows no operand (a name, a literal, ")" or "]").
    return re.sub(r"(?:^|(?<=[(\[])|(?<=[^\w)\]'\"] ))([&*!~-]) ", r"\1", e)

WHY = {"unreferenced": "a store to %s in this file takes no reference at all",
       "grab-only": "every store to %s in this file holds mm_count only (mmgrab(), an SVA "
                    "bond or an mmu notifier)",
       "unresolved": "no mmget() on a path to the borrow and no store to %s in this file",
       "": "no mmget() on a path to the borrow and the mm does not come from a struct field"}

def message(C, T, fld, grab, bare):
    kind = "unreferenced" if bare else "grab-only" if grab else "unresolved"
    field = "%s.%s" % ("an anonymous struct" if "{" in str(T) else T, fld)
    why = WHY[kind if T else ""].replace("%s", field)
    return "WARNING: %s without an mm_users reference (%s): %s" % (shown(C), kind, why)

@unpinned exists@
expression mm, C; position p;
@@

(
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm)@C;
|
mmput(mm);
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm)@C;
)

@owner exists@
expression unpinned.mm; position unpinned.p;
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

// A pin on an alias of the mm (a local assigned from the field, or the field
// from a local) is a pin of the borrowed mm.
@alias_assign exists@
expression unpinned.mm; position unpinned.p; expression A;
@@

(
mm = A;
|
A = mm;
)
...
\(kthread_use_mm@p\|use_mm@p\)(mm)

@alias_decl exists@
position unpinned.p; expression A; type TA; identifier i;
@@

TA i = A;
...
\(kthread_use_mm@p\|use_mm@p\)(i)

@alias_local exists@
expression unpinned.mm; position unpinned.p; type TA; identifier A;
@@

TA A = mm;
...
\(kthread_use_mm@p\|use_mm@p\)(mm)

@unpinned_alias exists@
expression unpinned.mm; position unpinned.p;
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
expression unpinned.mm; position unpinned.p;
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

@alias_pinned depends on (alias_assign || alias_decl) && !unpinned_alias ||
  alias_local && !unpinned_alias_local@
position unpinned.p; identifier b;
@@

b@p(...)

// The stores to the owning field, by what they hold.
@null_store@
expression X; identifier fld; position ps;
@@

\(X->fld@ps\|X.fld@ps\) = NULL

@users_dropped_store exists@
type owner.T; identifier owner.fld; T *yp; T ys; position ps;
@@

\(yp->fld@ps\|ys.fld@ps\) = get_task_mm(...);
...
mmgrab(\(yp->fld\|ys.fld\));
...
mmput(\(yp->fld\|ys.fld\));

// No mm_users reference on the value before the store (get_task_mm() and
// mm_alloc() give one), nor on the field after it.
@unpinned_store exists@
type owner.T; identifier owner.fld; T *yp; T ys; expression E;
position ps != null_store.ps;
@@

... when != \(mmget(E)\|mmget_not_zero(E)\)
(
\(yp->fld\|ys.fld\) = \(get_task_mm\|mm_alloc\)(...);
|
\(yp->fld@ps\|ys.fld@ps\) = E;
)
... when != mmget(yp->fld)
    when != mmget(ys.fld)

@pinned_store@
type owner.T; identifier owner.fld; T *yp; T ys; expression E;
position ps != {null_store.ps, unpinned_store.ps, users_dropped_store.ps};
@@

\(yp->fld@ps\|ys.fld@ps\) = E

@held_before depends on !context exists@
type owner.T; identifier owner.fld; T *yp; T ys; expression E; position ps;
identifier h = {mmgrab, iommu_sva_bind_device, mmu_notifier_register,
  __mmu_notifier_register, mmu_notifier_get, mmu_interval_notifier_insert};
@@

h(..., E, ...)
...
\(yp->fld@ps\|ys.fld@ps\) = E;

@held_after depends on !context exists@
type owner.T; identifier owner.fld; T *yp; T ys; expression E; position ps;
identifier h = {mmgrab, iommu_sva_bind_device, mmu_notifier_register,
  __mmu_notifier_register, mmu_notifier_get, mmu_interval_notifier_insert};
@@

\(yp->fld@ps\|ys.fld@ps\) = E;
...
h(..., \(E\|yp->fld\|ys.fld\), ...)

// An unpinned store (neither pinned nor dropped) that holds no mm_count.
@bare_store depends on !context@
type owner.T; identifier owner.fld; T *yp; T ys;
position ps != {null_store.ps, pinned_store.ps, users_dropped_store.ps, held_before.ps,
                held_after.ps};
@@

\(yp->fld@ps\|ys.fld@ps\) = ...

// Grab-only: every store holds mm_count, none holds nothing.
@grab_only depends on !context && (unpinned_store || users_dropped_store) && !pinned_store &&
  !bare_store && !alias_pinned@
position unpinned.p; identifier b;
@@

b@p(...)

@bare_site depends on (report || org) && bare_store@
position unpinned.p; identifier b;
@@

b@p(...)

@ctx depends on context && !pinned_store && !alias_pinned@
expression unpinned.mm; position unpinned.p;
@@

* \(kthread_use_mm@p\|use_mm@p\)(mm);

@script:python depends on report && !pinned_store && !alias_pinned@
p << unpinned.p;
C << unpinned.C;
T << owner.T = "";
fld << owner.fld = "";
grab << grab_only.b = "";
bare << bare_site.b = "";
@@

coccilib.report.print_report(p[0], message(C, T, fld, grab, bare))

@script:python depends on org && !pinned_store && !alias_pinned@
p << unpinned.p;
C << unpinned.C;
T << owner.T = "";
fld << owner.fld = "";
grab << grab_only.b = "";
bare << bare_site.b = "";
@@

coccilib.org.print_todo(p[0], message(C, T, fld, grab, bare).replace("[", "@(").replace("]", ")"))

// Patch mode: the grab-only wrap of a region with no other exit, where no lock,
// RCU or irqs-off section covers the borrow and no iocb is completed after it
// (the final mmput() could sleep, or wait in exit_aio() for its own iocb).
@hazard depends on patch exists@
expression unpinned.mm; position unpinned.p; expression I;
identifier lk =~ "lock|^down|^(local_irq|local_bh|preempt)_disable|^local_irq_save$|^get_cpu";
@@

(
lk(...);
...
kthread_use_mm@p(mm);
|
kthread_use_mm@p(mm);
...
\(I->ki_complete(...)\|ki_complete(...)\|aio_complete(...)\)
)

// The copy's result variable, with no initial value (not "int X = 0").
@copy_result depends on patch disable decl_init exists@
expression unpinned.mm; position unpinned.p; identifier X; type TX;
@@

TX X;
... when != X = ...
kthread_use_mm@p(mm);
... when != X
X = \(copy_to_user\|copy_from_user\|copy_to_iter\|copy_from_iter\)(...);

// No rule after a rewrite inherits a position: efault finds fix's work in fn.
@script:python borrow_fn depends on patch@
p << unpinned.p;
fn;
@@

coccinelle.fn = p[0].current_element

@fix depends on patch && grab_only && !hazard@
expression unpinned.mm; position unpinned.p; identifier label;
@@

- kthread_use_mm@p(mm);
+ if (mmget_not_zero(mm)) {
+ kthread_use_mm(mm);
  ... when != return ...;
      when != goto label;
  kthread_unuse_mm(mm);
+ mmput(mm);
+ }

// The copy's result starts at -EFAULT, for when the mm is gone.
@efault depends on patch && fix && copy_result@
identifier borrow_fn.fn, copy_result.X; expression unpinned.mm;
@@

fn(...) {
<...
+ X = -EFAULT;
  if (mmget_not_zero(mm)) { kthread_use_mm(mm); ... }
...>
}
