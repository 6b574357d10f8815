// SPDX-License-Identifier: GPL-2.0-only
///
/// mmaudit: the context of the kthread_use_mm()/use_mm() borrows of one
/// function, -D fn=NAME, for choosing the put that ends an mm_users pin:
/// mmput() may sleep and, when it drops the last mm_users, runs exit_aio(),
/// which waits for every in-flight iocb of the mm.  Prints one
/// "MMAUDIT <json>" line per fact; scripts/mmaudit_lib/context.py decides.
///   borrow, unborrow        each borrow of fn, and the first unborrow after it
///   held, released, always  a lock or atomic section that is held at a
///                           borrow or an unborrow ("at"), its first release
///                           after that point, and whether every path from an
///                           unborrow releases it (error paths included)
///   guarded                 a cleanup.h guard(K)(...) in a block that holds
///                           a borrow or an unborrow (released at the end of
///                           the block: no line)
///   completes_after         an iocb completion (->ki_complete(), ki_complete(),
///                           aio_complete()) that can follow the borrow in fn
///   calls_after             a call, after the borrow, of a function of this file
///   completes, call         every iocb completion and every call between the
///                           functions of this file (to follow fn's callees)
///   registered              a function of this file passed to a call
///                           (INIT_WORK(), ...), declared with DECLARE_WORK(),
///                           or stored into a field (a work item or a callback)
///   done                    the file was analyzed to the end (the last rule)
///
// Confidence: n/a (fact extraction, not a checker)
// Copyright: (C) 2026 The mmaudit developers
// Comments: context.py's lock_kind() classifies every lock name of these
//  rules (tests/test_context.py checks it).  scoped_guard() is not parsed by
//  spatch 1.1.1: a borrow inside one is not seen at all, which context.py
//  reports as incomplete (needs a human).
// Options: --no-includes --include-headers
// Generated from cocci/src/borrow_context.cocci.in, borrow.cocci, context.cocci, facts.cocci, helpers.py by scripts/gen-cocci: do not edit

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

# The functions defined in this file: calls and registrations are kept
# only for them.
DEFS = set()

@defs@
identifier d;
@@

d(...) { ... }

@script:python@
d << defs.d;
@@

DEFS.add(str(d))

// The borrows of fn, one binding each.
@borrow exists@
identifier virtual.fn;
expression M;
position pb;
@@

fn(...) {
... when any
\(kthread_use_mm@pb\|use_mm@pb\)(M);
... when any
}

@borrow_api@
position borrow.pb;
identifier api;
@@

api@pb(...)

@script:python@
pb << borrow.pb;
M << borrow.M;
api << borrow_api.api;
@@

emit("borrow", pb[0], api=str(api), mm=shown(M))

@unborrow exists@
position borrow.pb, pu;
@@

\(kthread_use_mm@pb\|use_mm@pb\)(...);
...
\(kthread_unuse_mm@pu\|unuse_mm@pu\)(...);

@script:python@
pb << borrow.pb;
pu << unborrow.pu;
@@

emit("unborrow", pu[0], borrow=int(pb[0].line))

// The points a section may hold: every borrow and unborrow of fn.
@point exists@
identifier virtual.fn;
position pa;
@@

fn(...) {
... when any
\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
... when any
}

// Sections with a lock argument: the unlock names the same expression.
// A lock call may sit in a condition (trylock, _interruptible).
@held exists@
position point.pa, pl;
expression L;
identifier lk = {spin_lock, spin_lock_bh, spin_lock_irq, spin_lock_irqsave,
  spin_lock_nested, spin_lock_irqsave_nested, spin_lock_nest_lock,
  spin_trylock, spin_trylock_bh, spin_trylock_irq, spin_trylock_irqsave,
  raw_spin_lock, raw_spin_lock_bh, raw_spin_lock_irq, raw_spin_lock_irqsave,
  raw_spin_lock_nested, raw_spin_lock_irqsave_nested, raw_spin_trylock,
  raw_spin_trylock_irqsave,
  read_lock, read_lock_bh, read_lock_irq, read_lock_irqsave, read_trylock,
  write_lock, write_lock_bh, write_lock_irq, write_lock_irqsave, write_trylock,
  local_lock, local_lock_irq, local_lock_irqsave, local_irq_save,
  get_cpu_ptr, get_cpu_var,
  mutex_lock, mutex_lock_nested, mutex_lock_interruptible,
  mutex_lock_interruptible_nested, mutex_lock_killable,
  mutex_lock_killable_nested, mutex_lock_io, mutex_trylock,
  rt_mutex_lock, rt_mutex_lock_interruptible, rt_mutex_trylock,
  ww_mutex_lock, ww_mutex_lock_interruptible,
  down, down_interruptible, down_killable, down_timeout, down_trylock,
  down_read, down_read_nested, down_read_interruptible, down_read_killable,
  down_read_trylock, down_write, down_write_nested, down_write_killable,
  down_write_trylock,
  mmap_read_lock, mmap_read_lock_killable, mmap_read_trylock,
  mmap_write_lock, mmap_write_lock_killable, mmap_write_lock_nested};
identifier ul = {spin_unlock, spin_unlock_bh, spin_unlock_irq,
  spin_unlock_irqrestore, raw_spin_unlock, raw_spin_unlock_bh,
  raw_spin_unlock_irq, raw_spin_unlock_irqrestore,
  read_unlock, read_unlock_bh, read_unlock_irq, read_unlock_irqrestore,
  write_unlock, write_unlock_bh, write_unlock_irq, write_unlock_irqrestore,
  local_unlock, local_unlock_irq, local_unlock_irqrestore, local_irq_restore,
  put_cpu_ptr, put_cpu_var,
  mutex_unlock, rt_mutex_unlock, ww_mutex_unlock, up, up_read, up_write,
  mmap_read_unlock, mmap_write_unlock};
@@

lk@pl(L, ...)
... when != ul(L, ...)
\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...)

@script:python@
pa << point.pa;
pl << held.pl;
lk << held.lk;
L << held.L;
@@

emit("held", pl[0], call=str(lk), lock=shown(L), at=int(pa[0].line))

@released exists@
position point.pa, pz;
expression held.L;
identifier ul = {spin_unlock, spin_unlock_bh, spin_unlock_irq,
  spin_unlock_irqrestore, raw_spin_unlock, raw_spin_unlock_bh,
  raw_spin_unlock_irq, raw_spin_unlock_irqrestore,
  read_unlock, read_unlock_bh, read_unlock_irq, read_unlock_irqrestore,
  write_unlock, write_unlock_bh, write_unlock_irq, write_unlock_irqrestore,
  local_unlock, local_unlock_irq, local_unlock_irqrestore, local_irq_restore,
  put_cpu_ptr, put_cpu_var,
  mutex_unlock, rt_mutex_unlock, ww_mutex_unlock, up, up_read, up_write,
  mmap_read_unlock, mmap_write_unlock};
@@

\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...)
...
ul@pz(L, ...)

@script:python@
pa << point.pa;
pz << released.pz;
ul << released.ul;
L << held.L;
@@

emit("released", pz[0], call=str(ul), lock=shown(L), at=int(pa[0].line))

// Every path from the unborrow releases the lock, error paths included
// (when strict): only then can a put go after the release.
@always@
position point.pa, pz;
expression held.L;
identifier ul = {spin_unlock, spin_unlock_bh, spin_unlock_irq,
  spin_unlock_irqrestore, raw_spin_unlock, raw_spin_unlock_bh,
  raw_spin_unlock_irq, raw_spin_unlock_irqrestore,
  read_unlock, read_unlock_bh, read_unlock_irq, read_unlock_irqrestore,
  write_unlock, write_unlock_bh, write_unlock_irq, write_unlock_irqrestore,
  local_unlock, local_unlock_irq, local_unlock_irqrestore, local_irq_restore,
  put_cpu_ptr, put_cpu_var,
  mutex_unlock, rt_mutex_unlock, ww_mutex_unlock, up, up_read, up_write,
  mmap_read_unlock, mmap_write_unlock};
@@

\(kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
... when strict
ul@pz(L, ...);

@script:python@
pa << point.pa;
pz << always.pz;
L << held.L;
@@

emit("always", pa[0], lock=shown(L), at=int(pa[0].line),
     lines=sorted(set(int(p.line) for p in pz)))

// A release that a path from the lock reaches without the borrow (e.g. a
// "goto out" before it): a put placed after that release must be
// conditional.
@bypass exists@
position held.pl, pz;
identifier held.lk;
expression held.L;
identifier ul = {spin_unlock, spin_unlock_bh, spin_unlock_irq,
  spin_unlock_irqrestore, raw_spin_unlock, raw_spin_unlock_bh,
  raw_spin_unlock_irq, raw_spin_unlock_irqrestore,
  read_unlock, read_unlock_bh, read_unlock_irq, read_unlock_irqrestore,
  write_unlock, write_unlock_bh, write_unlock_irq, write_unlock_irqrestore,
  local_unlock, local_unlock_irq, local_unlock_irqrestore, local_irq_restore,
  put_cpu_ptr, put_cpu_var,
  mutex_unlock, rt_mutex_unlock, ww_mutex_unlock, up, up_read, up_write,
  mmap_read_unlock, mmap_write_unlock};
@@

lk@pl(L, ...)
... when != \(kthread_use_mm\|use_mm\)(...)
ul@pz(L, ...)

@script:python@
pl << held.pl;
pz << bypass.pz;
L << held.L;
@@

emit("bypass", pz[0], lock=shown(L), lock_line=int(pl[0].line))

// Sections without a lock argument, one family per branch so that the
// release of one family does not end another.
@held0 exists@
position point.pa, pl;
expression E;
identifier rcu = {rcu_read_lock, rcu_read_lock_bh, rcu_read_lock_sched, rcu_read_lock_sched_notrace};
identifier pre = {preempt_disable, preempt_disable_notrace, get_cpu};
identifier irq = {local_irq_disable};
identifier bh = {local_bh_disable};
@@

(
rcu@pl();
... when != \(rcu_read_unlock\|rcu_read_unlock_bh\|rcu_read_unlock_sched\|rcu_read_unlock_sched_notrace\)();
\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
|
pre@pl();
... when != \(preempt_enable\|preempt_enable_no_resched\|preempt_enable_notrace\|put_cpu\)();
\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
|
E = pre@pl();
... when != \(preempt_enable\|preempt_enable_no_resched\|preempt_enable_notrace\|put_cpu\)();
\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
|
irq@pl();
... when != local_irq_enable();
\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
|
bh@pl();
... when != local_bh_enable();
\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
)

@script:python@
pa << point.pa;
pl << held0.pl;
rcu << held0.rcu = "";
pre << held0.pre = "";
irq << held0.irq = "";
bh << held0.bh = "";
@@

emit("held", pl[0], call=str(rcu or pre or irq or bh), lock="", at=int(pa[0].line))

// Their first release after a point, one rule per family (a disjunction
// would try only its first branch that matches at the point).
@released_rcu exists@
position point.pa, pz;
identifier ul = {rcu_read_unlock, rcu_read_unlock_bh, rcu_read_unlock_sched,
  rcu_read_unlock_sched_notrace};
@@

\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
...
ul@pz();

@script:python@
pa << point.pa;
pz << released_rcu.pz;
ul << released_rcu.ul;
@@

emit("released", pz[0], call=str(ul), lock="", at=int(pa[0].line))

@released_preempt exists@
position point.pa, pz;
identifier ul = {preempt_enable, preempt_enable_no_resched,
  preempt_enable_notrace, put_cpu};
@@

\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
...
ul@pz();

@script:python@
pa << point.pa;
pz << released_preempt.pz;
ul << released_preempt.ul;
@@

emit("released", pz[0], call=str(ul), lock="", at=int(pa[0].line))

@released_irq exists@
position point.pa, pz;
identifier ul = {local_irq_enable};
@@

\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
...
ul@pz();

@script:python@
pa << point.pa;
pz << released_irq.pz;
ul << released_irq.ul;
@@

emit("released", pz[0], call=str(ul), lock="", at=int(pa[0].line))

@released_bh exists@
position point.pa, pz;
identifier ul = {local_bh_enable};
@@

\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
...
ul@pz();

@script:python@
pa << point.pa;
pz << released_bh.pz;
ul << released_bh.ul;
@@

emit("released", pz[0], call=str(ul), lock="", at=int(pa[0].line))

// cleanup.h guards hold their lock to the end of the block.
@guarded exists@
position point.pa, pg;
identifier K;
expression list A;
@@

{
... when any
guard@pg(K)(A);
... when any
\(kthread_use_mm@pa\|use_mm@pa\|kthread_unuse_mm@pa\|unuse_mm@pa\)(...);
... when any
}

@script:python@
pa << point.pa;
pg << guarded.pg;
K << guarded.K;
A << guarded.A;
@@

emit("guarded", pg[0], call="guard(%s)" % K, lock=shown(A), at=int(pa[0].line))

// iocb completions: after the borrow in fn, and anywhere in the file.
@completes_after exists@
position borrow.pb, pk;
expression E;
expression list A;
@@

\(kthread_use_mm@pb\|use_mm@pb\)(...)
... when any
\(E->ki_complete@pk(A)\|ki_complete@pk(A)\|aio_complete@pk(A)\)

@script:python@
pb << borrow.pb;
pk << completes_after.pk;
@@

emit("completes_after", pk[0], borrow=int(pb[0].line))

@completes@
expression E;
expression list A;
position pk;
@@

\(E->ki_complete@pk(A)\|ki_complete@pk(A)\|aio_complete@pk(A)\)

@script:python@
pk << completes.pk;
@@

emit("completes", pk[0])

@calls_after exists@
position borrow.pb, pc;
identifier g : script:python() { str(g) in DEFS };
@@

\(kthread_use_mm@pb\|use_mm@pb\)(...)
... when any
g@pc(...)

@script:python@
pb << borrow.pb;
pc << calls_after.pc;
g << calls_after.g;
@@

emit("calls_after", pc[0], borrow=int(pb[0].line), callee=str(g))

@call@
identifier g : script:python() { str(g) in DEFS };
position pc;
@@

g@pc(...)

@script:python@
pc << call.pc;
g << call.g;
@@

emit("call", pc[0], callee=str(g))

// Registrations: INIT_WORK(&w, f), kthread_init_work(), timer and
// closure helpers, any call that takes f as an argument; DECLARE_WORK();
// ".complete = f" in an initializer; "x->end_io = sync ? NULL : f".
@reg_arg@
identifier how;
identifier cb : script:python() { str(cb) in DEFS };
position pr;
@@

how@pr(..., cb, ...)

@script:python@
pr << reg_arg.pr;
how << reg_arg.how;
cb << reg_arg.cb;
@@

emit("registered", pr[0], callee=str(cb), how=str(how))

@reg_declare@
declarer dw = {DECLARE_WORK, DECLARE_DELAYED_WORK};
identifier X;
identifier cb : script:python() { str(cb) in DEFS };
position pr;
@@

dw@pr(X, cb);

@script:python@
pr << reg_declare.pr;
dw << reg_declare.dw;
cb << reg_declare.cb;
@@

emit("registered", pr[0], callee=str(cb), how=str(dw))

@reg_init@
identifier x, fld;
identifier cb : script:python() { str(cb) in DEFS };
type T;
position pr;
@@

T x = { ..., .fld = cb@pr, ... };

@script:python@
pr << reg_init.pr;
fld << reg_init.fld;
cb << reg_init.cb;
@@

emit("registered", pr[0], callee=str(cb), how="." + str(fld))

@reg_store@
identifier fld;
identifier cb : script:python() { str(cb) in DEFS };
expression X, C, E;
position pr;
@@

\(X@pr->fld\|X@pr.fld\) = \(cb\|C ? E : cb\|C ? cb : E\)

@script:python@
pr << reg_store.pr;
fld << reg_store.fld;
cb << reg_store.cb;
@@

emit("registered", pr[0], callee=str(cb), how="." + str(fld))

// Last rule: the file was analyzed to the end.  A file without this fact
// (a timeout, a crash, a killed worker) is unanalyzed, whatever it printed.
@script:python@
@@

print("MMAUDIT " + json.dumps({"kind": "done", "files": cocci.files()}), flush=True)
