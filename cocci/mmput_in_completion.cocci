// SPDX-License-Identifier: GPL-2.0-only
///
/// Find an mmput() that can wait on its own iocb: after kthread_use_mm(),
/// a function puts the mm and then completes an iocb.  If that mmput()
/// drops the last mm_users, __mmput() -> exit_aio() waits for every
/// in-flight iocb of the mm, the one this function has yet to complete
/// included, so the worker waits for itself.  mmput_async() defers it.
///
// Confidence: Moderate
// Copyright: (C) 2026 The mmaudit Project
// URL: https://lore.kernel.org/all/20200203201745.29986-2-aarcange@redhat.com/
// Comments: Only the borrowing function is searched; mmaudit also follows
//  a helper it calls after the put and a function that calls it.
// Options: --no-includes --include-headers
// Requires: 1.1.0
// Generated from cocci/src/mmput_in_completion.cocci.in, borrow.cocci, context.cocci by scripts/gen-cocci: do not edit

virtual context
virtual org
virtual report

@initialize:python@
@@

MESSAGE = ("WARNING: mmput() before the iocb completes (put-in-completion): as the "
           "last mm_users it waits in exit_aio() for this iocb; use mmput_async()")

@self_wait depends on context || org || report exists@
expression mm; position p, pp; expression E; expression list I;
@@

\(kthread_use_mm@p\|use_mm@p\)(mm);
...
mmput@pp(mm);
... when any
\(E->ki_complete(I)\|ki_complete(I)\|aio_complete(I)\)

@depends on context@
expression self_wait.mm; position self_wait.pp;
@@

* mmput@pp(mm);

@script:python depends on report@
pp << self_wait.pp;
@@

coccilib.report.print_report(pp[0], MESSAGE)

@script:python depends on org@
pp << self_wait.pp;
@@

coccilib.org.print_todo(pp[0], MESSAGE)
