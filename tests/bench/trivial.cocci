// SPDX-License-Identifier: GPL-2.0-only
/// Trivial: print every kthread_use_mm(E).
// Options: --no-includes --include-headers
virtual report
@r@
expression E;
position p;
@@
kthread_use_mm@p(E)
@script:python depends on report@
p << r.p;
@@
coccilib.report.print_report(p[0], "kthread_use_mm")
