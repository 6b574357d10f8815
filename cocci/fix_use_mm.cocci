// SPDX-License-Identifier: GPL-2.0-only
///
/// Fix a kthread_use_mm() caller that holds no mm_users reference, as
/// upstream fixed gadgetfs: mmgrab() where the owner stores the mm, mmdrop()
/// where the owner is freed, and mmget_not_zero()/mmput() around the borrow.
/// scripts/mmaudit decides the parameters and the modes for each finding:
///   -D fn=F               the function that borrows
///   -D putfn=P            mmput, or mmput_async where the final put must not
///                         sleep or wait for the caller's own work
///   -D wrap               borrow and unborrow share a short block: wrap them
///   -D label -D exitlabel=L   leave through F's exit label L (which comes
///                         after the unborrow) when the mm is gone
///   -D early              return -EFAULT before the borrow
///   -D afterunlock        (early, label) the put goes after the mutex or
///                         semaphore unlock that follows the unborrow
///   -D errvar=V           V is -EFAULT when the mm is gone (wrap: V starts
///                         at -EFAULT; label: V is set before the goto)
///   -D fail -D donefn=D   both sit in one-line "if (mm)" branches of a void
///                         function F that its caller runs as
///                         "if (... || ERR) D(X); else F(X);": when the mm
///                         is gone, set ERR to -EFAULT and call D(X)
///   -D grab -D storefn=S -D tag=T -D fld=M   mmgrab() after S's stores
///                         (one run per storing function)
///   -D nullable           the stored mm may be NULL: mmgrab() only if set
///   -D heap -D heapfld=H  the object may live on the stack; its field H is
///                         true for the heap one: mmgrab() only then
///   -D drop [-D guarded]  mmdrop() before each kfree()/kvfree() of a struct T, and
///                         before each bio_put() of the bio it embeds
///
// Confidence: n/a (rewrite driven by mmaudit findings)
// Copyright: (C) 2026 The mmaudit developers
// Comments: The wrap mode is the rewrite of use_mm.cocci's patch mode.
// Options: --no-includes --include-headers
// Generated from cocci/src/fix_use_mm.cocci.in, borrow.cocci by scripts/gen-cocci: do not edit

virtual wrap
virtual label
virtual early
virtual afterunlock
virtual fail
virtual set_err
virtual grab
virtual drop
virtual guarded
virtual nullable
virtual heap

@wrap_and_fail depends on wrap && set_err@
identifier virtual.fn, virtual.errvar, virtual.putfn;
expression M;
@@

fn(...) {
<...
- kthread_use_mm(M);
+ errvar = -EFAULT;
+ if (mmget_not_zero(M)) {
+ kthread_use_mm(M);
  ...
  kthread_unuse_mm(M);
+ putfn(M);
+ }
...>
}

@wrap_and_skip depends on wrap && !set_err@
identifier virtual.fn, virtual.putfn;
expression M;
@@

fn(...) {
<...
- kthread_use_mm(M);
+ if (mmget_not_zero(M)) {
+ kthread_use_mm(M);
  ...
  kthread_unuse_mm(M);
+ putfn(M);
+ }
...>
}

@early_return depends on early@
identifier virtual.fn;
expression M;
@@

fn(...) {
<...
+ if (!mmget_not_zero(M))
+ 	return -EFAULT;
  kthread_use_mm(M);
...>
}

@label_exit depends on label && !set_err@
identifier virtual.fn, virtual.exitlabel;
expression M;
@@

fn(...) {
<...
+ if (!mmget_not_zero(M))
+ 	goto exitlabel;
  kthread_use_mm(M);
...>
}

@label_exit_err depends on label && set_err@
identifier virtual.fn, virtual.exitlabel, virtual.errvar;
expression M;
@@

fn(...) {
<...
+ if (!mmget_not_zero(M)) {
+ 	errvar = -EFAULT;
+ 	goto exitlabel;
+ }
  kthread_use_mm(M);
...>
}

@early_put depends on (early || label) && !afterunlock@
identifier virtual.fn, virtual.putfn;
expression M;
@@

fn(...) {
<...
  kthread_unuse_mm(M);
+ putfn(M);
...>
}

// A sleeping lock released right after the unborrow: the put, which may
// tear the address space down, comes after the unlock.
@put_after_unlock depends on (early || label) && afterunlock@
identifier virtual.fn, virtual.putfn;
expression M, L;
@@

fn(...) {
<...
  kthread_unuse_mm(M);
  \(mutex_unlock\|up\|up_read\|up_write\)(L);
+ putfn(M);
...>
}

// The caller's way to finish the object with an error, e.g. bcachefs's
// "if (!dio->iter.count || dio->op.error) done(dio); else continue(dio);".
@fail_path depends on fail@
identifier virtual.fn, virtual.donefn;
expression X, C, ERR;
@@

if (C || ERR)
	donefn(X);
else
	fn(X);

@fail_borrow depends on fail@
identifier virtual.fn, virtual.donefn;
expression fail_path.X, fail_path.ERR;
expression M;
@@

fn(...) {
<...
- if (M)
- 	kthread_use_mm(M);
+ if (M) {
+ 	if (!mmget_not_zero(M)) {
+ 		ERR = -EFAULT;
+ 		donefn(X);
+ 		return;
+ 	}
+ 	kthread_use_mm(M);
+ }
...>
}

@fail_put depends on fail@
identifier virtual.fn, virtual.putfn;
expression fail_borrow.M;
@@

fn(...) {
<...
- if (M)
- 	kthread_unuse_mm(M);
+ if (M) {
+ 	kthread_unuse_mm(M);
+ 	putfn(M);
+ }
...>
}

@grab_at_store depends on grab && !nullable && !heap@
identifier virtual.storefn, virtual.tag, virtual.fld;
struct tag *x;
expression E;
@@

storefn(...) {
<...
  x->fld = E;
+ mmgrab(x->fld);
...>
}

@grab_at_store_nullable depends on grab && nullable && !heap@
identifier virtual.storefn, virtual.tag, virtual.fld;
struct tag *x;
expression E;
@@

storefn(...) {
<...
  x->fld = E;
+ if (x->fld)
+ 	mmgrab(x->fld);
...>
}

@grab_at_store_heap depends on grab && heap@
identifier virtual.storefn, virtual.tag, virtual.fld, virtual.heapfld;
struct tag *x;
expression E;
@@

storefn(...) {
<...
  x->fld = E;
+ if (x->heapfld)
+ 	mmgrab(x->fld);
...>
}

// Functions that call the storing one free the owner before it stores.
@calls_store depends on drop@
identifier virtual.storefn;
identifier g;
position pg;
@@

g@pg(...) {
<+... storefn(...) ...+>
}

@drop_at_free depends on drop && !guarded@
identifier virtual.tag, virtual.fld;
identifier g;
position pg != calls_store.pg;
identifier f1, f2, f3;
struct tag *x;
@@

g@pg(...) {
<...
(
+ mmdrop(x->fld);
  kfree(x);
|
+ mmdrop(x->fld);
  kvfree(x);
|
+ mmdrop(x->fld);
  bio_put(\(&x->f1\|&x->f1.f2\|&x->f1.f2.f3\));
)
...>
}

// An owner carved from a bio's front pad is freed with the bio it was
// found from.
@drop_at_bio_put depends on drop && !guarded exists@
identifier virtual.tag, virtual.fld;
identifier g;
position pg != calls_store.pg;
identifier x;
expression B;
@@

g@pg(...) {
  ... when any
(
  x = container_of(B, struct tag, ...);
|
  struct tag *x = container_of(B, struct tag, ...);
)
  ... when any
+ mmdrop(x->fld);
  bio_put(B);
  ... when any
}

@drop_at_free_guarded depends on drop && guarded@
identifier virtual.tag, virtual.fld;
identifier g;
position pg != calls_store.pg;
identifier f1, f2, f3;
struct tag *x;
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
  kvfree(x);
|
+ if (x->fld)
+ 	mmdrop(x->fld);
  bio_put(\(&x->f1\|&x->f1.f2\|&x->f1.f2.f3\));
)
...>
}

@drop_at_bio_put_guarded depends on drop && guarded exists@
identifier virtual.tag, virtual.fld;
identifier g;
position pg != calls_store.pg;
identifier x;
expression B;
@@

g@pg(...) {
  ... when any
(
  x = container_of(B, struct tag, ...);
|
  struct tag *x = container_of(B, struct tag, ...);
)
  ... when any
+ if (x->fld)
+ 	mmdrop(x->fld);
  bio_put(B);
  ... when any
}
