// SPDX-License-Identifier: GPL-2.0-only
///
/// mmaudit balance check: on a file that a fix patch has changed, prove
/// function by function that the references the patch handles balance.
/// mm_users: every path on which mmget_not_zero()/mmget() succeeded
/// reaches mmput()/mmput_async() before the function returns, no mmput()
/// and no kthread_use_mm() runs on a path without a successful get, and
/// no mmput() (which may sleep) runs under a spinlock, rwlock, RCU, or
/// with interrupts, preemption or bottom halves off.  mm_count: an
/// mmgrab() after a store to x->fld is dropped before x is freed, an
/// mmdrop() never drops what was not grabbed, and a grab on an object on
/// the stack is dropped before the function returns.
/// Prints one "MMAUDIT <json>" line per problem or fact;
/// scripts/mmaudit_lib/balance.py joins the facts across functions.
///
// Confidence: High for the shapes mmaudit fix writes (see Comments)
// Copyright: (C) 2026 The mmaudit developers
// Comments: Two passes.  With -D probe the rule only describes each "if"
//   whose condition calls mmget_not_zero(); balance.py then adds, on the
//   same lines, __mmaudit_got(M, LINE) at the start of the branch where
//   the get succeeded and __mmaudit_gone(M, LINE) where it did not
//   (adding an else branch if needed), so that the second pass can follow
//   each path from the branch it took.  A put guarded by "if (M)" or by a
//   flag B (an identifier also set to true or 1) counts as a put on every
//   path from the get, since M, or B once set, is true there; from the
//   function entry such guarded puts are not followed.  A grab under
//   "if (C)" balances drops under the same C; "if (x->fld)" around a drop
//   counts as a drop after a grab.  The same expression must be used for
//   the get and the put, and for the grab and the drop: aliases are not
//   followed, nor are references handed to other functions, except that
//   balance.py matches a stack object passed to a function of this file
//   that grabs its parameter's field, or to one that drops it.
// Options: --no-includes --include-headers
// Generated from cocci/src/balance.cocci.in, borrow.cocci, facts.cocci, helpers.py, stores.cocci by scripts/gen-cocci: do not edit

virtual probe

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

MMFIELDS = set()        # fields that mmgrab() or mmdrop() take
FLAG_NAMES = set()      # identifiers that guard an mmput() and are set true
FLAG_SET = set()
FLAG_GUARD = set()
GRABBERS = set()        # functions that keep a grab on a parameter's field
DROPPERS = set()        # functions that drop a parameter's field

def problem(p, check, text, **facts):
    emit("problem", p, check=check, problem=text, **facts)

def extent(p):
    return [int(p.line), int(p.column), int(p.line_end), int(p.column_end)]

def flag(b):
    b = str(b)
    if b in FLAG_SET and b in FLAG_GUARD:
        FLAG_NAMES.add(b)

// ---------------------------------------------------------------------------
// Pass 1 (-D probe): each "if" whose condition calls mmget_not_zero(), with
// the extents of its condition, of the mm, and of its branches.

@getif_else depends on probe disable neg_if, braces0, braces1, braces2, braces3, braces4@
expression C, M;
statement S1, S2;
position pi, pc, pg, pm, p1, p2;
@@

if@pi (\(C@pc \& <+... mmget_not_zero@pg(M@pm) ...+>\)) S1@p1 else S2@p2

@script:python depends on probe@
pc << getif_else.pc;
pg << getif_else.pg;
pm << getif_else.pm;
p1 << getif_else.p1;
p2 << getif_else.p2;
@@

emit("getif", pg[0], cond=extent(pc[0]), m=extent(pm[0]), then=extent(p1[0]),
     els=extent(p2[0]))

@getif depends on probe disable neg_if, braces0, braces1, braces2, braces3, braces4@
expression C, M;
statement S1;
position pi != getif_else.pi;
position pc, pg, pm, p1;
@@

if@pi (\(C@pc \& <+... mmget_not_zero@pg(M@pm) ...+>\)) S1@p1

@script:python depends on probe@
pc << getif.pc;
pg << getif.pg;
pm << getif.pm;
p1 << getif.p1;
@@

emit("getif", pg[0], cond=extent(pc[0]), m=extent(pm[0]), then=extent(p1[0]), els=None)

@getcall depends on probe@
expression M;
position pg;
@@

mmget_not_zero@pg(M)

@script:python depends on probe@
pg << getcall.pg;
M << getcall.M;
@@

emit("getcall", pg[0], mm=shown(M))

// ---------------------------------------------------------------------------
// Pass 2: the checks, on the file with the branch markers added.

// Every call of the reference API that spatch saw, so that balance.py can
// tell a call in code spatch could not parse (which no check covered).
@seen depends on !probe@
identifier api = {mmget, mmget_not_zero, mmput, mmput_async, mmgrab, mmdrop,
                  kthread_use_mm, use_mm};
position p;
@@

api@p(...)

@script:python depends on !probe@
p << seen.p;
api << seen.api;
@@

emit("seen", p[0], api=str(api))

// Flags: "if (B) { ... mmput(M); ... }" where B is also set to true or 1.
@flag_set depends on !probe@
identifier B;
symbol true;
@@

B = \(true\|1\)

@script:python depends on !probe@
B << flag_set.B;
@@

FLAG_SET.add(str(B))
flag(B)

@flag_guard depends on !probe@
identifier B;
expression M;
@@

if (B) { ... \(mmput(M)\|mmput_async(M)\); ... }

@script:python depends on !probe@
B << flag_guard.B;
@@

FLAG_GUARD.add(str(B))
flag(B)

// --- mm_users ---------------------------------------------------------------

// A path from a successful get to a return, or to the end of the function,
// that does not put.  A store of the mm into a field or through a pointer
// hands the reference on.
@users_leak_ret exists@
expression M, L, X, E;
identifier fld;
identifier flg : script:python () { flg in FLAG_NAMES };
position pg, pr;
@@

\(__mmaudit_got@pg(M, L)\|mmget@pg(M)\);
... when != \(mmput(M)\|mmput_async(M)\)
    when != if (\(M\|M != NULL\|flg\)) { ... \(mmput(M)\|mmput_async(M)\); ... }
    when != \(X->fld = M\|X.fld = M\|*X = M\)
    when != E = mmget(M)
return@pr ...;

@script:python depends on !probe@
pg << users_leak_ret.pg;
pr << users_leak_ret.pr;
M << users_leak_ret.M;
L << users_leak_ret.L = "";
@@

how = "mmget_not_zero(%s)" % shown(M) if L else "mmget(%s)" % shown(M)
emit("users_leak", pg[0], mm=shown(M), at=int(str(L)) if L else int(pg[0].line),
     how=how, ret=[int(pr[0].line), int(pr[0].column)])

@users_leak_end exists@
identifier f;
expression M, L, X, E;
identifier fld;
identifier flg : script:python () { flg in FLAG_NAMES };
position pg;
@@

f(...) {
... when any
\(__mmaudit_got@pg(M, L)\|mmget@pg(M)\);
... when != \(mmput(M)\|mmput_async(M)\)
    when != if (\(M\|M != NULL\|flg\)) { ... \(mmput(M)\|mmput_async(M)\); ... }
    when != \(X->fld = M\|X.fld = M\|*X = M\)
    when != E = mmget(M)
    when != return M;
}

@script:python depends on !probe@
pg << users_leak_end.pg;
M << users_leak_end.M;
L << users_leak_end.L = "";
@@

how = "mmget_not_zero(%s)" % shown(M) if L else "mmget(%s)" % shown(M)
emit("users_leak", pg[0], mm=shown(M), at=int(str(L)) if L else int(pg[0].line),
     how=how, ret=None)

// A flag that guards the put but is not set on a path after the get.
@flag_unset exists@
expression M, L, E;
identifier flg : script:python () { flg in FLAG_NAMES };
position pg, pb;
@@

\(__mmaudit_got@pg(M, L)\|mmget@pg(M)\);
... when != \(mmput(M)\|mmput_async(M)\)
    when != flg = E
if@pb (flg) { ... \(mmput(M)\|mmput_async(M)\); ... }

@flag_unset_name depends on !probe@
position flag_unset.pb;
identifier bn;
statement S;
@@

if@pb (bn) S

@script:python depends on !probe@
pg << flag_unset.pg;
pb << flag_unset.pb;
M << flag_unset.M;
flagname << flag_unset_name.bn;
L << flag_unset.L = "";
@@

at = int(str(L)) if L else int(pg[0].line)
problem(pb[0], "users_flag",
        "mmput(%s) at line %d runs only if %s is set, but a path from the get at line %d "
        "reaches it without setting %s: the mm_users reference leaks"
        % (shown(M), int(pb[0].line), flagname, at, flagname))

// Functions that take an mm_users reference on M.
@hasget depends on !probe@
identifier f;
expression M;
@@

f(...) {
<+... \(mmget_not_zero(M)\|mmget(M)\) ...+>
}

// From the start of such a function, a path that has not taken the get
// (and is not inside a branch on M or on a flag that guards the put).
@put_from_entry exists@
identifier hasget.f;
expression hasget.M;
expression L;
identifier flg : script:python () { flg in FLAG_NAMES };
position p;
@@

f(...) {
... when != \(__mmaudit_got(M, L)\|mmget(M)\|mmget_not_zero(M)\)
    when != if (\(M\|M != NULL\|flg\)) { ... \(mmput(M)\|mmput_async(M)\); ... }
\(mmput@p(M)\|mmput_async@p(M)\);
... when any
}

@script:python depends on !probe@
p << put_from_entry.p;
M << hasget.M;
@@

problem(p[0], "users_put_without_get",
        "mmput(%s) at line %d can run on a path from the start of %s() that took no "
        "mm_users reference: it would drop one it does not hold"
        % (shown(M), int(p[0].line), p[0].current_element))

@use_from_entry exists@
identifier hasget.f;
expression hasget.M;
expression L;
identifier flg : script:python () { flg in FLAG_NAMES };
position p;
@@

f(...) {
... when != \(__mmaudit_got(M, L)\|mmget(M)\|mmget_not_zero(M)\)
    when != if (\(M\|M != NULL\|flg\)) { ... \(mmput(M)\|mmput_async(M)\); ... }
\(kthread_use_mm@p(M)\|use_mm@p(M)\);
... when any
}

@script:python depends on !probe@
p << use_from_entry.p;
M << hasget.M;
@@

problem(p[0], "users_borrow_uncovered",
        "kthread_use_mm(%s) at line %d can run on a path from the start of %s() that "
        "took no mm_users reference: the new get does not cover this borrow"
        % (shown(M), int(p[0].line), p[0].current_element))

@flag_from_entry exists@
identifier hasget.f;
expression hasget.M;
expression L;
identifier flg : script:python () { flg in FLAG_NAMES };
position p;
symbol true;
@@

f(...) {
... when != \(__mmaudit_got(M, L)\|mmget(M)\|mmget_not_zero(M)\)
    when != if (\(M\|M != NULL\|flg\)) { ... \(mmput(M)\|mmput_async(M)\); ... }
flg@p = \(true\|1\);
... when any
}

@flag_from_entry_name depends on !probe@
position flag_from_entry.p;
identifier bn;
@@

bn@p = ...

@script:python depends on !probe@
p << flag_from_entry.p;
M << hasget.M;
flagname << flag_from_entry_name.bn;
@@

problem(p[0], "users_flag",
        "%s is set at line %d on a path from the start of %s() that took no mm_users "
        "reference on %s, so the mmput() it guards drops one that is not held"
        % (flagname, int(p[0].line), p[0].current_element, shown(M)))

// From the branch where mmget_not_zero() failed.
@put_after_gone exists@
expression M, L, L2;
position pf, p;
@@

__mmaudit_gone@pf(M, L);
... when != __mmaudit_got(M, L2)
\(mmput@p(M)\|mmput_async@p(M)\);

@script:python depends on !probe@
p << put_after_gone.p;
M << put_after_gone.M;
L << put_after_gone.L;
@@

problem(p[0], "users_put_without_get",
        "mmput(%s) at line %d can run on the path where mmget_not_zero(%s) at line %s "
        "failed: it would drop an mm_users reference that was not taken"
        % (shown(M), int(p[0].line), shown(M), L))

@use_after_gone exists@
expression M, L, L2;
position pf, p;
@@

__mmaudit_gone@pf(M, L);
... when != __mmaudit_got(M, L2)
\(kthread_use_mm@p(M)\|use_mm@p(M)\);

@script:python depends on !probe@
p << use_after_gone.p;
M << use_after_gone.M;
L << use_after_gone.L;
@@

problem(p[0], "users_borrow_uncovered",
        "kthread_use_mm(%s) at line %d can run on the path where mmget_not_zero(%s) at "
        "line %s failed: the borrow is not covered by an mm_users reference"
        % (shown(M), int(p[0].line), shown(M), L))

@flag_after_gone exists@
expression M, L, L2;
identifier flg : script:python () { flg in FLAG_NAMES };
position pf, p;
symbol true;
@@

__mmaudit_gone@pf(M, L);
... when != __mmaudit_got(M, L2)
flg@p = \(true\|1\);

@flag_after_gone_name depends on !probe@
position flag_after_gone.p;
identifier bn;
@@

bn@p = ...

@script:python depends on !probe@
p << flag_after_gone.p;
M << flag_after_gone.M;
L << flag_after_gone.L;
flagname << flag_after_gone_name.bn;
@@

problem(p[0], "users_flag",
        "%s is set at line %d on the path where mmget_not_zero(%s) at line %s failed, so "
        "the mmput() it guards drops a reference that was not taken"
        % (flagname, int(p[0].line), shown(M), L))

// After a put, in a function that gets: a second put, or a borrow.
@put_after_put exists@
identifier hasget.f;
expression hasget.M;
expression L, E;
position p0, p;
@@

f(...) {
... when any
\(mmput@p0(M)\|mmput_async@p0(M)\);
... when != \(__mmaudit_got(M, L)\|mmget(M)\)
    when != M = E
\(mmput@p(M)\|mmput_async@p(M)\);
... when any
}

@script:python depends on !probe@
p0 << put_after_put.p0;
p << put_after_put.p;
M << hasget.M;
@@

problem(p[0], "users_put_twice",
        "mmput(%s) at line %d can run after mmput(%s) at line %d with no get between: "
        "the mm_users reference is dropped twice"
        % (shown(M), int(p[0].line), shown(M), int(p0[0].line)))

@use_after_put exists@
identifier hasget.f;
expression hasget.M;
expression L, E;
position p0, p;
@@

f(...) {
... when any
\(mmput@p0(M)\|mmput_async@p0(M)\);
... when != \(__mmaudit_got(M, L)\|mmget(M)\)
    when != M = E
\(kthread_use_mm@p(M)\|use_mm@p(M)\);
... when any
}

@script:python depends on !probe@
p0 << use_after_put.p0;
p << use_after_put.p;
M << hasget.M;
@@

problem(p[0], "users_borrow_uncovered",
        "kthread_use_mm(%s) at line %d can run after mmput(%s) at line %d dropped the "
        "mm_users reference, with no new get between"
        % (shown(M), int(p[0].line), shown(M), int(p0[0].line)))

// mmput() may sleep (the last put tears the address space down);
// mmput_async() and mmdrop() do not.
@sleep_locked exists@
expression L, M;
identifier lk =~ "^(raw_)?(spin|read|write)_lock(_irq|_irqsave|_bh|_nested|_irqsave_nested|_bh_nested)?$";
identifier ul =~ "^(raw_)?(spin|read|write)_unlock(_irq|_irqrestore|_bh)?$";
position pl, p;
@@

lk@pl(L, ...);
... when != ul(L, ...)
mmput@p(M);

@script:python depends on !probe@
pl << sleep_locked.pl;
p << sleep_locked.p;
lk << sleep_locked.lk;
L << sleep_locked.L;
M << sleep_locked.M;
@@

problem(p[0], "users_put_atomic",
        "mmput(%s) at line %d may sleep, but %s(%s) taken at line %d is still held: "
        "use mmput_async() or put after the unlock"
        % (shown(M), int(p[0].line), lk, shown(L), int(pl[0].line)))

@sleep_atomic exists@
expression M, F;
position pl, p;
@@

(
rcu_read_lock@pl();
... when != rcu_read_unlock()
|
rcu_read_lock_bh@pl();
... when != rcu_read_unlock_bh()
|
rcu_read_lock_sched@pl();
... when != rcu_read_unlock_sched()
|
local_irq_disable@pl();
... when != local_irq_enable()
|
local_irq_save@pl(F);
... when != local_irq_restore(F)
|
preempt_disable@pl();
... when != \(preempt_enable()\|preempt_enable_no_resched()\)
|
local_bh_disable@pl();
... when != local_bh_enable()
)
mmput@p(M);

@api_atomic depends on !probe@
position sleep_atomic.pl;
identifier fn;
@@

fn@pl(...)

@script:python depends on !probe@
pl << sleep_atomic.pl;
p << sleep_atomic.p;
M << sleep_atomic.M;
fn << api_atomic.fn;
@@

ends = {"rcu_read_lock": "rcu_read_unlock()", "rcu_read_lock_bh": "rcu_read_unlock_bh()",
        "rcu_read_lock_sched": "rcu_read_unlock_sched()",
        "local_irq_disable": "local_irq_enable()", "local_irq_save": "local_irq_restore()",
        "preempt_disable": "preempt_enable()", "local_bh_disable": "local_bh_enable()"}
problem(p[0], "users_put_atomic",
        "mmput(%s) at line %d may sleep, but it can run after %s() at line %d before %s: "
        "use mmput_async() or put after it"
        % (shown(M), int(p[0].line), fn, int(pl[0].line), ends.get(str(fn), "the end of it")))

// --- mm_count ---------------------------------------------------------------

@mmfield depends on !probe@
expression X;
identifier fld;
@@

\(mmgrab\|mmdrop\)(\(X->fld\|X.fld\))

@script:python depends on !probe@
fld << mmfield.fld;
@@

MMFIELDS.add(str(fld))

@null_store depends on !probe@
expression X; identifier fld; position ps;
@@

\(X->fld@ps\|X.fld@ps\) = NULL

@mmstore depends on !probe@
identifier mf : script:python () { mf in MMFIELDS };
expression X, E;
position ps != null_store.ps;
@@

\(X->mf@ps\|X.mf@ps\) = E

@store depends on !probe@
identifier fld;
expression X, E;
position mmstore.ps;
@@

\(X->fld@ps\|X.fld@ps\) = E

@store_type depends on !probe@
identifier store.fld;
type T;
T *xp;
T xs;
position mmstore.ps;
@@

\(xp->fld@ps\|xs.fld@ps\) = ...

@grabbed_before exists@
expression store.X, store.E;
identifier store.fld;
position mmstore.ps;
position pgb;
@@

mmgrab@pgb(..., E, ...)
...
\(X->fld@ps\|X.fld@ps\) = E;

@grabbed_after exists@
expression store.X, store.E;
identifier store.fld;
position mmstore.ps;
position pga;
@@

\(X->fld@ps\|X.fld@ps\) = E;
...
mmgrab@pga(..., \(E\|X->fld\|X.fld\), ...)

@users_value depends on !probe@
expression store.X;
identifier store.fld;
position mmstore.ps;
identifier fn = {get_task_mm, mm_alloc};
@@

\(X->fld@ps\|X.fld@ps\) = fn(...)

@script:python depends on !probe@
ps << mmstore.ps;
fld << store.fld;
X << store.X;
E << store.E;
T << store_type.T = "";
after << grabbed_after.pga = [];
before << grabbed_before.pgb = [];
users << users_value.fn = "";
@@

emit("store", ps[0], field=str(fld), base=shown(X), value=shown(E),
     type=str(T) if T else None,
     grabbed=bool(after or before), users=bool(users))

@drop depends on !probe@
identifier fld;
type T;
T *xp;
T xs;
position pd;
@@

mmdrop@pd(\(xp->fld\|xs.fld\))

@script:python depends on !probe@
pd << drop.pd;
fld << drop.fld;
T << drop.T;
@@

emit("drop", pd[0], field=str(fld), type=str(T))

// A grab after a store to X->fld, then a path to a free of X that does not
// drop it.  "if (X->fld) mmdrop(X->fld)" counts as a drop: the field is set
// wherever the grab ran.
@count_leak exists@
expression X, E, E2;
identifier fld, f1, f2, f3;
position pg, pf;
@@

(
X->fld = E;
... when != X->fld = E2
mmgrab@pg(\(X->fld\|E\));
|
mmgrab@pg(E);
... when != X->fld = E2
X->fld = E;
)
... when != mmdrop(X->fld)
    when != if (X->fld) { ... mmdrop(X->fld); ... }
    when != X = E2
    when != X->fld = E2
(
kfree@pf(X);
|
kvfree@pf(X);
|
bio_put@pf(\(&X->f1\|&X->f1.f2\|&X->f1.f2.f3\));
)

@script:python depends on !probe@
pg << count_leak.pg;
pf << count_leak.pf;
X << count_leak.X;
fld << count_leak.fld;
@@

problem(pf[0], "count_leak",
        "%s is freed at line %d on a path from mmgrab() at line %d without mmdrop(%s->%s): "
        "the mm_count reference leaks" % (shown(X), int(pf[0].line), int(pg[0].line),
                                          shown(X), fld))

// The same for an owner found with container_of() from the bio that is put.
@count_leak_bio exists@
identifier x, fld;
type T;
expression B, E, E2;
position pg, pf;
@@

(
x = container_of(B, T, ...);
|
T *x = container_of(B, T, ...);
)
... when any
(
x->fld = E;
... when != x->fld = E2
mmgrab@pg(\(x->fld\|E\));
|
mmgrab@pg(E);
... when != x->fld = E2
x->fld = E;
)
... when != mmdrop(x->fld)
    when != if (x->fld) { ... mmdrop(x->fld); ... }
    when != x = E2
    when != x->fld = E2
bio_put@pf(B);

@script:python depends on !probe@
pg << count_leak_bio.pg;
pf << count_leak_bio.pf;
x << count_leak_bio.x;
fld << count_leak_bio.fld;
bio << count_leak_bio.B;
@@

problem(pf[0], "count_leak",
        "bio_put(%s) at line %d frees %s on a path from mmgrab() at line %d without "
        "mmdrop(%s->%s): the mm_count reference leaks"
        % (shown(bio), int(pf[0].line), x, int(pg[0].line), x, fld))

// A store that took no grab, then a drop of the field on the same path.  A
// path through a grab under a condition is left to extra_drop_cond.
@extra_drop exists@
identifier f;
expression store.X, store.E;
identifier store.fld;
position mmstore.ps;
expression C, E2;
position pd;
@@

f(...) {
... when != mmgrab(E)
\(X->fld@ps\|X.fld@ps\) = E;
... when != mmgrab(\(E\|X->fld\|X.fld\))
    when != if (C) { ... mmgrab(\(E\|X->fld\|X.fld\)); ... }
    when != \(X->fld\|X.fld\) = E2
mmdrop@pd(\(X->fld\|X.fld\));
... when any
}

@script:python depends on !probe@
ps << mmstore.ps;
pd << extra_drop.pd;
X << store.X;
fld << store.fld;
@@

problem(pd[0], "count_extra_drop",
        "mmdrop() at line %d drops %s->%s, stored at line %d without mmgrab(): mm_count "
        "underflows" % (int(pd[0].line), shown(X), fld, int(ps[0].line)),
        store=int(ps[0].line))

// The grab after the store runs only if C (C may be the field itself, or a
// flag that tells the object's kind): a drop is balanced only under the
// same C.
@extra_drop_cond exists@
identifier f;
expression store.X, store.E;
identifier store.fld;
position mmstore.ps;
expression C, E2;
statement S;
position pc, pd;
@@

f(...) {
... when != mmgrab(E)
\(X->fld@ps\|X.fld@ps\) = E;
... when != mmgrab(\(E\|X->fld\|X.fld\))
    when != \(X->fld\|X.fld\) = E2
if (C) { ... mmgrab@pc(\(E\|X->fld\|X.fld\)); ... }
... when != mmgrab(\(E\|X->fld\|X.fld\))
    when != \(X->fld\|X.fld\) = E2
    when != if (C) S
mmdrop@pd(\(X->fld\|X.fld\));
... when any
}

@script:python depends on !probe@
ps << mmstore.ps;
pc << extra_drop_cond.pc;
pd << extra_drop_cond.pd;
X << store.X;
fld << store.fld;
C << extra_drop_cond.C;
@@

problem(pd[0], "count_extra_drop",
        "mmdrop() at line %d drops %s->%s, stored at line %d, also when %s is false, but the "
        "mmgrab() at line %d runs only if it is true: mm_count underflows"
        % (int(pd[0].line), shown(X), fld, int(ps[0].line), shown(C), int(pc[0].line)),
        store=int(ps[0].line))

// Two drops of the same field on one path, with no grab, store or free
// between.
@double_drop exists@
expression X, E;
identifier fld, f1, f2, f3;
position p0, pd;
@@

mmdrop@p0(X->fld);
... when != mmgrab(X->fld)
    when != X->fld = E
    when != X = E
    when != kfree(X)
    when != kvfree(X)
    when != bio_put(\(&X->f1\|&X->f1.f2\|&X->f1.f2.f3\))
mmdrop@pd(X->fld);

@script:python depends on !probe@
p0 << double_drop.p0;
pd << double_drop.pd;
X << double_drop.X;
fld << double_drop.fld;
@@

problem(pd[0], "count_extra_drop",
        "mmdrop(%s->%s) at line %d can run after mmdrop(%s->%s) at line %d on the same "
        "path, with no mmgrab() between: mm_count is dropped twice"
        % (shown(X), fld, int(pd[0].line), shown(X), fld, int(p0[0].line)))

// Objects on the stack: a grab after a store into one must be dropped
// before the function returns, as nothing frees the object.
@param_grab exists@
identifier f, x, fld;
type T;
parameter list[n] before;
expression E;
position pg;
@@

f(before, T *x, ...) {
... when any
x->fld = E;
... when any
mmgrab@pg(\(x->fld\|E\));
... when != mmdrop(x->fld)
}

@script:python depends on !probe@
f << param_grab.f;
n << param_grab.n;
fld << param_grab.fld;
pg << param_grab.pg;
@@

GRABBERS.add(str(f))
emit("param_grab", pg[0], callee=str(f), index=int(n), field=str(fld))

@param_drop depends on !probe@
identifier f, x, fld;
type T;
parameter list[n] before;
@@

f(before, T *x, ...) {
<+... mmdrop(x->fld) ...+>
}

@script:python depends on !probe@
f << param_drop.f;
@@

DROPPERS.add(str(f))

// Locals that are structs on the stack (balance.py drops pointers and
// arrays by their type, and statics by the static_local fact).
@stack_local depends on !probe@
identifier f, v;
type T;
expression E0;
position pd;
@@

f(...) {
... when any
\(T v@pd;\|T v@pd = E0;\)
... when any
}

@script:python depends on !probe@
pd << stack_local.pd;
v << stack_local.v;
T << stack_local.T;
@@

emit("local", pd[0], var=str(v), type=str(T))

@static_local depends on !probe@
identifier f, v;
type T;
expression E0;
position pd;
@@

f(...) {
... when any
\(static T v@pd;\|static T v@pd = E0;\)
... when any
}

@script:python depends on !probe@
pd << static_local.pd;
v << static_local.v;
@@

emit("static_local", pd[0], var=str(v))

// A grab after a store into v.fld, directly or through p = &v, and a path
// from it to the end of the function that drops no field of v.
@stack_grab exists@
identifier f, v, p, fld, fld2;
type T;
expression E, E0;
identifier drp : script:python () { drp in DROPPERS };
position pa, pg;
@@

f(...) {
... when any
(
v.fld@pa = E;
... when != v = E0
mmgrab@pg(\(v.fld\|E\));
|
\(p@pa = &v;\|T *p@pa = &v;\)
... when != p = E0
p->fld = E;
... when != p = E0
mmgrab@pg(\(p->fld\|E\));
)
... when != mmdrop(v.fld2)
    when != mmdrop(p->fld2)
    when != if (...) { ... \(mmdrop(v.fld2)\|mmdrop(p->fld2)\); ... }
    when != drp(..., &v, ...)
    when != drp(..., p, ...)
}

@script:python depends on !probe@
pa << stack_grab.pa;
pg << stack_grab.pg;
v << stack_grab.v;
fld << stack_grab.fld;
p << stack_grab.p = "";
@@

emit("stack_grab", pg[0], var=str(v), field=str(fld), alias=str(p) if p else None,
     at=int(pa[0].line))

// A grab that runs only if a field of the object is true ("if (p->aio)").
@cond_grab depends on !probe@
expression X, E;
identifier fl;
position pg;
@@

if (\(X->fl\|X.fl\)) { ... mmgrab@pg(E); ... }

@script:python depends on !probe@
pg << cond_grab.pg;
X << cond_grab.X;
fl << cond_grab.fl;
@@

emit("cond_grab", pg[0], base=shown(X), flag=str(fl))

@flag_false depends on !probe@
symbol false;
expression X;
identifier fl;
position pf;
@@

\(X->fl@pf\|X.fl@pf\) = \(false\|0\)

@script:python depends on !probe@
pf << flag_false.pf;
X << flag_false.X;
fl << flag_false.fl;
@@

emit("flag_false", pf[0], base=shown(X), flag=str(fl))

@stack_call exists@
identifier g, v, fld2;
expression list[n] es;
identifier grb : script:python () { grb in GRABBERS };
identifier drp : script:python () { drp in DROPPERS };
position pc;
@@

g(...) {
... when any
grb@pc(es, &v, ...);
... when != mmdrop(v.fld2)
    when != drp(..., &v, ...)
}

@stack_call_name depends on !probe@
position stack_call.pc;
identifier callee;
@@

callee@pc(...)

@script:python depends on !probe@
pc << stack_call.pc;
v << stack_call.v;
callee << stack_call_name.callee;
n << stack_call.n;
@@

emit("stack_call", pc[0], var=str(v), callee=str(callee), index=int(n))

// Last rule: the file was analyzed to the end.  A file without this fact
// (a timeout, a crash, a killed worker) is unanalyzed, whatever it printed.
@script:python@
@@

print("MMAUDIT " + json.dumps({"kind": "done", "files": cocci.files()}), flush=True)
