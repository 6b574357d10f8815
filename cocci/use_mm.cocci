// SPDX-License-Identifier: GPL-2.0-only
///
/// kthread_use_mm() (use_mm() before v5.8) takes no mm_users reference.
/// alpha, ia64, mips, powerpc, sh and sparc skip remote TLB flushes when
/// mm_users == 1, and an mm without an mm_users reference can be torn down
/// while a kernel thread is still using it.  A caller must therefore hold
/// an mm_users reference (mmget(), mmget_not_zero(), get_task_mm(),
/// mm_alloc()) across the borrow; mmgrab() only pins mm_count.
///
// Confidence: High for local pins and same-file stores; Low when no store
//   of the mm field is visible in the file (see Comments)
// Copyright: (C) 2026 The mmaudit developers
// Comments: The rule looks at one file.  An mm loaded from a struct field
//   is judged by the stores to that field of that struct type in the same
//   file; stores that mix pinned and unpinned sources are not reported
//   here (mmaudit reports them as "review").  A statement-like macro body
//   is checked on its own; an expression macro body is not seen.
//   Patch mode fixes grab-only sites whose context it can judge (no lock,
//   RCU, irqs-off or iocb completion around the borrow); `mmaudit fix`
//   writes the others, and the unreferenced ones, from the whole tree.
// Options: --no-includes --include-headers

virtual patch
virtual context
virtual org
virtual report

@initialize:python@
@@

import re

def shown(e):
    """spatch prints "a -> b [ i ] . c"; show it as written in C."""
    return re.sub(r" ?(->|\.|\[|\]) ?", r"\1", str(e))

def field(t, f):
    t = str(t)
    return "%s.%s" % ("an anonymous struct" if "{" in t else t, f)

// A borrow reached from the function entry, or from an mmput(), by a path
// that takes no mm_users reference on the same expression.
@unpinned exists@
expression mm;
position p;
@@

(
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
mmput(mm);
... when != \(mmget(mm)\|mmget_not_zero(mm)\|mm = get_task_mm(...)\|mm = mm_alloc()\)
\(kthread_use_mm@p\|use_mm@p\)(mm);
)

@api@
position unpinned.p;
identifier borrow;
@@

borrow@p(...)

// Where the mm comes from a struct field, directly or through a local.
@owner exists@
expression unpinned.mm;
position unpinned.p;
type T, T2;
T *xp;
T xs;
identifier fld, alias;
@@

(
\(kthread_use_mm@p\|use_mm@p\)(\(xp->fld\|xs.fld\));
|
mm = \(xp->fld\|xs.fld\);
...
\(kthread_use_mm@p\|use_mm@p\)(mm);
|
T2 alias = \(xp->fld\|xs.fld\);
...
\(kthread_use_mm@p\|use_mm@p\)(alias);
)

// Store classes.  NULL resets are not stores of an mm.
@null_store@
expression X;
identifier f;
position ps;
@@

\(X->f@ps\|X.f@ps\) = NULL

@users_store@
expression X;
identifier f;
position ps;
@@

\(X->f@ps\|X.f@ps\) = \(get_task_mm\|mm_alloc\)(...)

// get_task_mm() then mmgrab() then mmput(): only mm_count is left.
@users_dropped_store exists@
expression X;
identifier f;
position ps;
@@

(
X->f@ps = get_task_mm(...);
...
mmgrab(X->f);
...
mmput(X->f);
|
X.f@ps = get_task_mm(...);
...
mmgrab(X.f);
...
mmput(X.f);
)

@any_store@
type owner.T;
identifier owner.fld;
T *yp;
T ys;
expression E;
position ps != null_store.ps;
@@

\(yp->fld@ps\|ys.fld@ps\) = E

// A store reached by a path that took no mm_users reference on its value,
// or that is not followed by one.
@unpinned_store exists@
type owner.T;
identifier owner.fld;
T *yp;
T ys;
expression E;
position ps != {null_store.ps, users_store.ps};
@@

... when != \(mmget(E)\|mmget_not_zero(E)\)
\(yp->fld@ps\|ys.fld@ps\) = E;
... when != mmget(yp->fld)
    when != mmget(ys.fld)

@pinned_store@
type owner.T;
identifier owner.fld;
T *yp;
T ys;
expression E;
position ps != {null_store.ps, unpinned_store.ps, users_dropped_store.ps};
@@

\(yp->fld@ps\|ys.fld@ps\) = E

@grabbed_store exists@
type owner.T;
identifier owner.fld;
T *yp;
T ys;
expression E;
position ps;
@@

(
mmgrab(E);
...
\(yp->fld@ps\|ys.fld@ps\) = E;
|
\(yp->fld@ps\|ys.fld@ps\) = E;
...
mmgrab(\(E\|yp->fld\|ys.fld\));
)

// An SVA bond or an mmu notifier on the stored mm holds mm_count for the
// object (each takes mmgrab()).
@indirect_store exists@
type owner.T;
identifier owner.fld;
T *yp;
T ys;
expression E;
position ps;
@@

\(iommu_sva_bind_device\|mmu_notifier_register\|__mmu_notifier_register\|mmu_notifier_get\|mmu_interval_notifier_insert\)(..., E, ...)
...
\(yp->fld@ps\|ys.fld@ps\) = E;

@indirect_store_after exists@
type owner.T;
identifier owner.fld;
T *yp;
T ys;
expression E;
position ps;
@@

\(yp->fld@ps\|ys.fld@ps\) = E;
...
\(iommu_sva_bind_device\|mmu_notifier_register\|__mmu_notifier_register\|mmu_notifier_get\|mmu_interval_notifier_insert\)(..., \(E\|yp->fld\|ys.fld\), ...)

// A store that holds neither mm_users nor mm_count.
@bare_store exists@
type owner.T;
identifier owner.fld;
T *yp;
T ys;
expression E;
position ps != {null_store.ps, users_store.ps, grabbed_store.ps, indirect_store.ps,
                indirect_store_after.ps};
@@

... when != \(mmget(E)\|mmget_not_zero(E)\)
\(yp->fld@ps\|ys.fld@ps\) = E;
... when != mmget(yp->fld)
    when != mmget(ys.fld)

@ctx depends on context && !pinned_store@
expression unpinned.mm;
position unpinned.p;
@@

* \(kthread_use_mm@p\|use_mm@p\)(mm);

@script:python depends on report && !owner@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
@@

coccilib.report.print_report(p[0], "WARNING: %s(%s) without an mm_users reference (unresolved): no mmget() on a path to the borrow and the mm does not come from a struct field" % (borrow, shown(mm)))

@script:python depends on org && !owner@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
@@

coccilib.org.print_todo(p[0], "WARNING: %s(%s) without an mm_users reference (unresolved): no mmget() on a path to the borrow and the mm does not come from a struct field" % (borrow, shown(mm)))

@script:python depends on report && owner && !any_store@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
T << owner.T;
fld << owner.fld;
@@

coccilib.report.print_report(p[0], "WARNING: %s(%s) without an mm_users reference (unresolved): no mmget() on a path to the borrow and no store to %s in this file" % (borrow, shown(mm), field(T, fld)))

@script:python depends on org && owner && !any_store@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
T << owner.T;
fld << owner.fld;
@@

coccilib.org.print_todo(p[0], "WARNING: %s(%s) without an mm_users reference (unresolved): no mmget() on a path to the borrow and no store to %s in this file" % (borrow, shown(mm), field(T, fld)))

@script:python depends on report && any_store && !pinned_store && !bare_store@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
T << owner.T;
fld << owner.fld;
@@

coccilib.report.print_report(p[0], "WARNING: %s(%s) without an mm_users reference (grab-only): every store to %s in this file holds mm_count only (mmgrab(), an SVA bond or an mmu notifier)" % (borrow, shown(mm), field(T, fld)))

@script:python depends on org && any_store && !pinned_store && !bare_store@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
T << owner.T;
fld << owner.fld;
@@

coccilib.org.print_todo(p[0], "WARNING: %s(%s) without an mm_users reference (grab-only): every store to %s in this file holds mm_count only (mmgrab(), an SVA bond or an mmu notifier)" % (borrow, shown(mm), field(T, fld)))

@script:python depends on report && !pinned_store && bare_store@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
T << owner.T;
fld << owner.fld;
@@

coccilib.report.print_report(p[0], "WARNING: %s(%s) without an mm_users reference (unreferenced): a store to %s in this file takes no reference at all" % (borrow, shown(mm), field(T, fld)))

@script:python depends on org && !pinned_store && bare_store@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
T << owner.T;
fld << owner.fld;
@@

coccilib.org.print_todo(p[0], "WARNING: %s(%s) without an mm_users reference (unreferenced): a store to %s in this file takes no reference at all" % (borrow, shown(mm), field(T, fld)))

// Patch mode: the one rewrite this file alone decides and that is safe
// wherever it applies: a grab-only site (every store here holds mm_count)
// whose borrow and unborrow share a block with no other exit between them,
// in a function that holds no lock, RCU or irqs-off section over the borrow
// and completes no iocb after it (there a final mmput() could sleep or wait
// for its own iocb in exit_aio()).  The borrow block then runs only under
// mmget_not_zero(), and the variable that receives the copy's result, if it
// has no initial value, starts at -EFAULT.  Unreferenced sites (mmgrab()
// at every store, mmdrop() wherever the owner is freed), other contexts
// and long regions are for `mmaudit fix`, which sees the whole tree.  The
// rewriting rules find the borrow by its function (a position cannot be
// inherited past a rewrite) and come last, so that spatch's file filter
// still requires kthread_use_mm().
// What the put's context needs judged: a lock, RCU or irqs-off section
// around the borrow, or an iocb completed after it.
@hazard depends on patch && unpinned exists@
expression unpinned.mm;
position unpinned.p;
expression L, I;
@@

(
\(spin_lock\|spin_lock_irq\|spin_lock_irqsave\|spin_lock_bh\|raw_spin_lock\|raw_spin_lock_irq\|raw_spin_lock_irqsave\|read_lock\|read_lock_irqsave\|write_lock\|write_lock_irqsave\|mutex_lock\|mutex_lock_interruptible\|mutex_lock_killable\|down\|down_read\|down_write\|local_irq_save\)(L, ...);
...
kthread_use_mm@p(mm);
|
\(rcu_read_lock\|local_irq_disable\|preempt_disable\)();
...
kthread_use_mm@p(mm);
|
kthread_use_mm@p(mm);
...
\(I->ki_complete(...)\|aio_complete(...)\);
)

@borrow_fn depends on patch && unpinned@
expression unpinned.mm;
position unpinned.p;
identifier fn;
@@

fn(...) {
<...
kthread_use_mm@p(mm);
...>
}

// Declared without an initial value (decl_init would also take "int X = 0")
// and not assigned before the borrow on some path.
@copy_result depends on patch && unpinned disable decl_init exists@
expression unpinned.mm;
position unpinned.p;
identifier X;
type TX;
@@

TX X;
... when != X = ...
kthread_use_mm@p(mm);
... when != X
X = \(copy_to_user\|copy_from_user\|copy_to_iter\|copy_from_iter\)(...);

@wrappable depends on patch && unpinned@
expression unpinned.mm;
position unpinned.p;
identifier label;
@@

kthread_use_mm@p(mm);
... when != return ...;
    when != goto label;
kthread_unuse_mm(mm);

@fix_and_fail depends on patch && unpinned && any_store && !pinned_store && !bare_store &&
  !hazard && wrappable && copy_result@
identifier borrow_fn.fn, copy_result.X;
expression unpinned.mm;
@@

fn(...) {
<...
- kthread_use_mm(mm);
+ X = -EFAULT;
+ if (mmget_not_zero(mm)) {
+ kthread_use_mm(mm);
  ...
  kthread_unuse_mm(mm);
+ mmput(mm);
+ }
...>
}

@fix depends on patch && unpinned && any_store && !pinned_store && !bare_store &&
  !hazard && wrappable && !copy_result@
identifier borrow_fn.fn;
expression unpinned.mm;
@@

fn(...) {
<...
- kthread_use_mm(mm);
+ if (mmget_not_zero(mm)) {
+ kthread_use_mm(mm);
  ...
  kthread_unuse_mm(mm);
+ mmput(mm);
+ }
...>
}
