// SPDX-License-Identifier: GPL-2.0-only
// Parser workarounds for mmaudit, passed to spatch with --macro-file.
// spatch's own standard.h covers most kernel annotations; these are the
// ones seen in the files around kthread_use_mm() callers that it misses.

// Lock-context annotations on function definitions (sparse only).
#define __must_hold(x)
#define __acquires(x)
#define __releases(x)
#define __cond_acquires(x)

// Section and cold-path markers on definitions.
#define __cold
#define noinline_for_stack
