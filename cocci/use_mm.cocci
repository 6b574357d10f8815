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
//   Patch mode fixes grab-only sites, and unreferenced ones when this file
//   also frees the owner: an unreferenced mm needs a mmgrab() where it is
//   stored, balanced where the owner is freed, before mmget_not_zero() is
//   safe.
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

coccilib.report.print_report(p[0], "WARNING: %s(%s) without an mm_users reference (grab-only): every store to %s in this file holds mm_count only (mmgrab)" % (borrow, shown(mm), field(T, fld)))

@script:python depends on org && any_store && !pinned_store && !bare_store@
p << unpinned.p;
mm << unpinned.mm;
borrow << api.borrow;
T << owner.T;
fld << owner.fld;
@@

coccilib.org.print_todo(p[0], "WARNING: %s(%s) without an mm_users reference (grab-only): every store to %s in this file holds mm_count only (mmgrab)" % (borrow, shown(mm), field(T, fld)))

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

// Patch mode: the rewrite mmaudit fix (cocci/fix_use_mm.cocci) writes,
// for what this file shows.  The borrow block runs only under
// mmget_not_zero(), and the variable that receives the copy's result, if
// it has no initial value, starts at -EFAULT.  An unreferenced mm first
// gets mmgrab() after each store that takes no reference and mmdrop()
// where the owner is freed; mmget_not_zero() on an mm that nothing pins
// is itself a use-after-free, so nothing is rewritten unless this file
// frees the owner.  The early "return -EFAULT" shape of mmaudit fix is left
// out: its rule makes spatch's file filter select most of the tree.  The
// rewriting rules find the borrow by its function: a position cannot be
// inherited past a rewrite.  Every rule depends on unpinned, and the rules
// whose added code holds kthread_use_mm() come last: otherwise spatch's
// file filter stops requiring it and selects most of the tree.  Keep these
// rules in step with fix_use_mm.cocci and audit_stores.cocci (freed_before).
@bare_store_fn depends on patch && unpinned && bare_store && !pinned_store@
identifier owner.fld, sf;
expression X, E;
position bare_store.ps;
@@

sf(...) { <+... X->fld@ps = E ...+> }

// Functions that call a storing one free an owner that was never stored.
@calls_store_fn depends on patch && unpinned && bare_store_fn@
identifier bare_store_fn.sf, g;
position pg;
@@

g@pg(...) { <+... sf(...) ...+> }

@owner_freed depends on patch && unpinned && bare_store_fn@
type owner.T;
identifier g, f1, f2, f3;
position pg != calls_store_fn.pg;
T *x;
@@

g@pg(...) { <+... \(kfree(x)\|bio_put(\(&x->f1\|&x->f1.f2\|&x->f1.f2.f3\))\) ...+> }

// An owner carved from a bio's front pad dies with the bio it came from.
@owner_freed_bio depends on patch && unpinned && bare_store_fn exists@
type owner.T;
identifier g;
position pg != calls_store_fn.pg;
identifier x;
expression B;
@@

g@pg(...) {
  ... when any
(
  x = container_of(B, T, ...);
|
  T *x = container_of(B, T, ...);
)
  ... when any
  bio_put(B);
  ... when any
}

// "if (mm) kthread_use_mm(mm)": the mm may be NULL (a kernel thread's
// current->mm), so mmgrab() and mmdrop() test it.
@nullable depends on patch && unpinned && bare_store_fn@
expression unpinned.mm;
position unpinned.p;
@@

if (mm) kthread_use_mm@p(mm);

// mmdrop() must cope with an owner freed before its store ran: a store in
// one branch of an if, or a path of the storing function that frees the
// owner before the store.
@store_in_branch depends on patch && unpinned && bare_store_fn exists@
identifier owner.fld;
expression bare_store_fn.X, E, C;
position bare_store.ps;
@@

(
if (C) { <+... X->fld@ps = E ...+> } else { ... }
|
if (C) { ... } else { <+... X->fld@ps = E ...+> }
)

@freed_before depends on patch && unpinned && bare_store_fn exists@
identifier owner.fld, bare_store_fn.sf, f1, f2, f3;
expression bare_store_fn.X;
position bare_store.ps;
@@

sf(...) {
... when != X->fld@ps = ...
\(kfree(X)\|bio_put(\(&X->f1\|&X->f1.f2\|&X->f1.f2.f3\))\);
... when any
}

@freed_before_bio depends on patch && unpinned && bare_store_fn exists@
identifier owner.fld, bare_store_fn.sf, x;
expression B;
type T;
position bare_store.ps;
@@

sf(...) {
... when any
(
x = container_of(B, T, ...);
|
T *x = container_of(B, T, ...);
)
... when != x->fld@ps = ...
bio_put(B);
... when any
}

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

// A void function whose caller finishes the object on error, e.g.
// bcachefs's "if (!dio->iter.count || dio->op.error) done(dio); else
// continue(dio);": a gone mm fails it the same way.
@fail_path depends on patch && unpinned && nullable && (owner_freed || owner_freed_bio)@
identifier borrow_fn.fn, donefn;
expression X, C, ERR;
@@

if (C || ERR)
	donefn(X);
else
	fn(X);

// The owner's mm_count, where the borrow will be rewritten.
@grab_bare depends on patch && unpinned && bare_store_fn && !nullable &&
  (owner_freed || owner_freed_bio) && ((wrappable && !nullable) || fail_path)@
identifier owner.fld, bare_store_fn.sf;
expression bare_store_fn.X, E;
@@

sf(...) {
<...
  X->fld = E;
+ mmgrab(X->fld);
...>
}

@grab_bare_nullable depends on patch && unpinned && bare_store_fn && nullable &&
  (owner_freed || owner_freed_bio) && ((wrappable && !nullable) || fail_path)@
identifier owner.fld, bare_store_fn.sf;
expression bare_store_fn.X, E;
@@

sf(...) {
<...
  X->fld = E;
+ if (X->fld)
+ 	mmgrab(X->fld);
...>
}

@drop_at_free depends on patch && unpinned && (grab_bare || grab_bare_nullable) &&
  !(nullable || store_in_branch || freed_before || freed_before_bio)@
type owner.T;
identifier owner.fld, g, f1, f2, f3;
position pg != calls_store_fn.pg;
T *x;
@@

g@pg(...) {
<...
(
+ mmdrop(x->fld);
  kfree(x);
|
+ mmdrop(x->fld);
  bio_put(\(&x->f1\|&x->f1.f2\|&x->f1.f2.f3\));
)
...>
}

@drop_at_bio_put depends on patch && unpinned && (grab_bare || grab_bare_nullable) &&
  !(nullable || store_in_branch || freed_before || freed_before_bio) exists@
type owner.T;
identifier owner.fld, g;
position pg != calls_store_fn.pg;
identifier x;
expression B;
@@

g@pg(...) {
  ... when any
(
  x = container_of(B, T, ...);
|
  T *x = container_of(B, T, ...);
)
  ... when any
+ mmdrop(x->fld);
  bio_put(B);
  ... when any
}

@drop_at_free_guarded depends on patch && unpinned && (grab_bare || grab_bare_nullable) &&
  (nullable || store_in_branch || freed_before || freed_before_bio)@
type owner.T;
identifier owner.fld, g, f1, f2, f3;
position pg != calls_store_fn.pg;
T *x;
@@

g@pg(...) {
<...
(
+ if (x->fld)
+ 	mmdrop(x->fld);
  kfree(x);
|
+ if (x->fld)
+ 	mmdrop(x->fld);
  bio_put(\(&x->f1\|&x->f1.f2\|&x->f1.f2.f3\));
)
...>
}

@drop_at_bio_put_guarded depends on patch && unpinned && (grab_bare || grab_bare_nullable) &&
  (nullable || store_in_branch || freed_before || freed_before_bio) exists@
type owner.T;
identifier owner.fld, g;
position pg != calls_store_fn.pg;
identifier x;
expression B;
@@

g@pg(...) {
  ... when any
(
  x = container_of(B, T, ...);
|
  T *x = container_of(B, T, ...);
)
  ... when any
+ if (x->fld)
+ 	mmdrop(x->fld);
  bio_put(B);
  ... when any
}

@fix_and_fail depends on patch && unpinned && any_store && !pinned_store && wrappable && copy_result &&
  (!bare_store || owner_freed || owner_freed_bio) && !nullable@
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

@fix depends on patch && unpinned && any_store && !pinned_store && wrappable && !copy_result &&
  (!bare_store || owner_freed || owner_freed_bio) && !nullable@
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


@fail_borrow depends on patch && unpinned && fail_path@
identifier borrow_fn.fn, fail_path.donefn;
expression fail_path.X, fail_path.ERR, unpinned.mm;
@@

fn(...) {
<+...
- if (mm)
- 	kthread_use_mm(mm);
+ if (mm) {
+ 	if (!mmget_not_zero(mm)) {
+ 		ERR = -EFAULT;
+ 		donefn(X);
+ 		return;
+ 	}
+ 	kthread_use_mm(mm);
+ }
...+>
}

@fail_put depends on patch && unpinned && fail_path && fail_borrow@
identifier borrow_fn.fn;
expression unpinned.mm;
@@

fn(...) {
<+...
- if (mm)
- 	kthread_unuse_mm(mm);
+ if (mm) {
+ 	kthread_unuse_mm(mm);
+ 	mmput(mm);
+ }
...+>
}
