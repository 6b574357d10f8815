// SPDX-License-Identifier: GPL-2.0-only
///
/// mmaudit's architecture table (`mmaudit arches`): every read of mm_users,
/// atomic_read(&E->mm_users), in one file under arch/, with what decides
/// whether it is a TLB shortcut: the constant it is compared with, the
/// if/while/return condition that holds it (or the assignment that keeps
/// the test for later), an assertion around it, a
/// CONFIG_DEBUG_VM guard before it, and the functions that take a struct
/// mmu_gather.  Prints "MMAUDIT <json>" lines keyed by the read's position;
/// scripts/mmaudit_lib/arches.py decides which reads skip or narrow a flush.
///
// Confidence: n/a (fact extraction, not a checker)
// Copyright: (C) 2026 The mmaudit developers
// Comments: #ifdef CONFIG_DEBUG_VM is checked by arches.py on the source
//  text: spatch parses both branches of an #ifdef and does not say which
//  one a position is in.
// Options: --no-includes --include-headers
// Generated from cocci/src/arch_shortcuts.cocci.in, facts.cocci, helpers.py by scripts/gen-cocci: do not edit

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

// Every read.  arches.py checks that each textual read has this fact: one
// that has not (spatch dropped its function) makes the file fail.
@read@
expression E;
position p;
@@

atomic_read@p(\(&E->mm_users\|&E.mm_users\))

@script:python@
p << read.p;
@@

emit("mmu_read", p[0])

// The comparison, as "mm_users OP C": a constant on the left is moved to
// the right, its operator flipped.  The binary operator metavariable
// keeps the is_zero and commeq isomorphisms out.
@compared_right@
expression read.E;
position read.p;
binary operator op = {==, !=, <=, <, >, >=};
constant C;
@@

atomic_read@p(\(&E->mm_users\|&E.mm_users\)) op C

@script:python@
p << read.p;
op << compared_right.op;
C << compared_right.C;
@@

emit("mmu_compared", p[0], op=str(op).strip(), value=str(C).strip())

@compared_left@
expression read.E;
position read.p;
binary operator op = {==, !=, <=, <, >, >=};
constant C;
@@

C op atomic_read@p(\(&E->mm_users\|&E.mm_users\))

@script:python@
p << read.p;
op << compared_left.op;
C << compared_left.C;
@@

flipped = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
emit("mmu_compared", p[0], op=flipped.get(str(op).strip(), str(op).strip()),
     value=str(C).strip())

// !atomic_read(...) is "mm_users == 0".  not_int1 would also make this
// match "atomic_read(...) == 0", which compared_right already gives.
@negated disable not_int1@
expression read.E;
position read.p, pn;
@@

!atomic_read@p@pn(\(&E->mm_users\|&E.mm_users\))

@script:python@
p << read.p;
pn << negated.pn;
@@

emit("mmu_compared", p[0], op="==", value="0")

// The whole condition of the if, while or return that holds the read: its
// extent, for arches.py to show it as written.
@condition@
expression read.E;
position read.p;
expression C;
position pc;
statement S1, S2;
@@

(
if (\(C@pc\&<+...atomic_read@p(\(&E->mm_users\|&E.mm_users\))...+>\)) S1 else S2
|
if (\(C@pc\&<+...atomic_read@p(\(&E->mm_users\|&E.mm_users\))...+>\)) S1
|
while (\(C@pc\&<+...atomic_read@p(\(&E->mm_users\|&E.mm_users\))...+>\)) S1
|
return \(C@pc\&<+...atomic_read@p(\(&E->mm_users\|&E.mm_users\))...+>\);
)

@script:python@
p << read.p;
pc << condition.pc;
@@

emit("mmu_condition", p[0], start_line=int(pc[0].line), start_col=int(pc[0].column),
     end_line=int(pc[0].line_end), end_col=int(pc[0].column_end))

// A test stored for later (bool single = atomic_read(...) == 1;): the
// value, when the read is in no condition.
@stored@
expression read.E;
position read.p;
expression C, X;
position pc;
type T;
identifier x;
@@

(
T x = \(C@pc\&<+...atomic_read@p(\(&E->mm_users\|&E.mm_users\))...+>\);
|
X = \(C@pc\&<+...atomic_read@p(\(&E->mm_users\|&E.mm_users\))...+>\)
)

@script:python@
p << read.p;
pc << stored.pc;
@@

emit("mmu_stored", p[0], start_line=int(pc[0].line), start_col=int(pc[0].column),
     end_line=int(pc[0].line_end), end_col=int(pc[0].column_end))

// A read in the arguments of BUG_ON(), WARN_ON_ONCE(), VM_BUG_ON_MM() and
// the like checks an invariant; it decides no flush.
@assertion@
identifier A =~ "(^|_)(BUG|WARN)(_|$)";
expression read.E;
position read.p;
@@

A(..., <+...atomic_read@p(\(&E->mm_users\|&E.mm_users\))...+>, ...)

@script:python@
p << read.p;
A << assertion.A;
@@

emit("mmu_assertion", p[0], macro=str(A))

// A function that returns first unless CONFIG_DEBUG_VM (arm64's
// __check_safe_pte_update()) is a debug check as a whole: a read that no
// path from the entry reaches but through that return.
@reached exists@
expression read.E;
position read.p;
identifier f;
@@

f(...) {
... when != if (!IS_ENABLED(CONFIG_DEBUG_VM)) return ...;
atomic_read@p(\(&E->mm_users\|&E.mm_users\))
... when any
}

@debug_guarded exists@
expression read.E;
position read.p;
@@

if (!IS_ENABLED(CONFIG_DEBUG_VM)) return ...;
...
atomic_read@p(\(&E->mm_users\|&E.mm_users\))

@script:python depends on debug_guarded && !reached@
p << read.p;
@@

emit("mmu_debug_only", p[0])

// Functions that take a struct mmu_gather: TLB code whatever their name.
@gather@
identifier f, tlb;
position pf;
@@

f@pf(..., struct mmu_gather *tlb, ...) { ... }

@script:python@
pf << gather.pf;
@@

emit("mmu_gather", pf[0])

// Last rule: the file was analyzed to the end.  A file without this fact
// (a timeout, a crash, a killed worker) is unanalyzed, whatever it printed.
@script:python@
@@

print("MMAUDIT " + json.dumps({"kind": "done", "files": cocci.files()}), flush=True)
