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

// powerpc instruction macros used as the whole template of an asm
// statement (asm/ppc-opcode.h): each is a string literal made by
// stringify_in_c(), which spatch cannot see with --no-includes.
#define PPC_CP_ABORT ""
#define PPC_TLBIEL(rb, rs, ric, prs, r) ""
#define PPC_TLBIE_5(rb, rs, ric, prs, r) ""

// Bounds annotations on flexible array members (compiler_types.h):
// __attribute__((__counted_by__(member))) or nothing.
#define __counted_by(member)
#define __counted_by_le(member)
#define __counted_by_be(member)

// Loop macros spatch does not take for loops: a braced body after
// drm_exec_until_all_locked() is rejected, and an unbraced body of
// kvm_for_each_vcpu() that starts with '*' is read as a multiplication.
// Both are loops whose body runs zero or more times (drm_exec.h,
// kvm_host.h); YACFE_ITERATOR makes spatch parse them as such.
#define drm_exec_until_all_locked(exec) YACFE_ITERATOR
#define kvm_for_each_vcpu(idx, vcpup, kvm) YACFE_ITERATOR

// Not fixable here: standard.h (--macro-file-builtins) wins over this file
// for DEFINE_PER_CPU and SYSCALL_DEFINEn, and CLOSURE_CALLBACK(name) is
// taken for a declaration macro before this file is consulted.
