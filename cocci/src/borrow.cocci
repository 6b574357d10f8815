// Fragments of the rules (see scripts/gen-cocci): the borrow, its pins and
// where the borrowed mm comes from.

// kthread_use_mm() was use_mm() before v5.8; both are matched.
//% borrow_names()
kthread_use_mm, use_mm
//% end

//% unborrow_names()
kthread_unuse_mm, unuse_mm
//% end

//% borrow(at=)
{{alt borrow_names $at}}
//% end

// A borrow or an unborrow.
//% point(at=)
{{alt point_names $at}}
//% end

//% point_names()
{{borrow_names}}, {{unborrow_names}}
//% end

// An mm_users reference on E: a get, or E owns one from get_task_mm() or
// mm_alloc().
//% pin(E, at=)
\(mmget$at($E)\|mmget_not_zero$at($E)\|$E = get_task_mm$at(...)\|$E = mm_alloc$at()\)
//% end

// A get of an mm_users reference on the value E.
//% get(E, at=)
\(mmget$at($E)\|mmget_not_zero$at($E)\)
//% end

// A borrow of mm at p (the call: C), reached by a path from the function
// entry, or from an mmput(), that takes no mm_users reference on the same
// expression.
//% unpinned_paths(C=)
(
... when != {{pin mm}}
{{borrow @p}}(mm)$C;
|
mmput(mm);
... when != {{pin mm}}
{{borrow @p}}(mm)$C;
)
//% end

// Where the borrowed mm (FROM.mm at FROM.p) comes from: a struct field, directly,
// through an assignment (at pa), or through a local initialised from it (at pa).
//% owner_rule(from)
@owner exists@
expression $from.mm; position $from.p;
type T, T2; T *xp; T xs; identifier fld, alias; position pa;
@@

(
{{borrow @p}}(\(xp->fld\|xs.fld\));
|
mm@pa = \(xp->fld\|xs.fld\);
...
{{borrow @p}}(mm);
|
T2 alias@pa = \(xp->fld\|xs.fld\);
...
{{borrow @p}}(alias);
)
//% end

// A script's bindings of the owner found by RULE (its xp or xs is bound).
//% owner_bindings(rule)
T << $rule.T;
fld << $rule.fld;
xp << $rule.xp = "";
xs << $rule.xs = "";
//% end

// The rewrite of a borrow that holds no mm_users reference: the region from
// the borrow to the unborrow (the fragment REGION) runs only under
// mmget_not_zero(), and PUT ends the reference after the unborrow.  FAIL,
// if given, is a line added before.
//% wrap(M, put, at=, fail=, region=region)
- kthread_use_mm$at($M);
$fail
+ if (mmget_not_zero($M)) {
+ kthread_use_mm($M);
  {{$region}}
  kthread_unuse_mm($M);
+ $put($M);
+ }
//% end

//% region()
...
//% end

// A region that cannot leave before its end (identifier label).
//% region_no_exit()
... when != return ...;
    when != goto label;
//% end

// The aliases of the borrowed mm (FROM.mm at FROM.p): an expression A that
// holds the same pointer at the borrow, because the mm was assigned from it,
// or it from the mm, or a local was initialised from it.  A pin of an alias
// is a pin of the borrowed mm.  Rule ANY (an expression set) collects them.
//% alias_rules(from)
@alias_assign exists@
expression $from.mm; position $from.p; expression A;
@@

(
mm = A;
|
A = mm;
)
...
{{borrow @p}}(mm)

@alias_decl exists@
position $from.p; expression A; type TA; identifier i;
@@

TA i = A;
...
{{borrow @p}}(i)

@alias_local exists@
expression $from.mm; position $from.p; type TA; identifier A;
@@

TA A = mm;
...
{{borrow @p}}(mm)
//% end

// The borrow at FROM.p, reached by a path that pins neither its mm nor
// alias A (the fragment ALIAS declares it, inherited from the alias rules): from the
// entry, or from an mmput() of either.  A spatch set of expressions cannot
// hold an identifier, so a local initialised from the mm has a rule of its own.
//% alias_expressions()
expression A = {alias_assign.A, alias_decl.A};
//% end

//% alias_identifier()
identifier alias_local.A;
//% end

//% unpinned_alias_rule(from, name, alias)
@$name exists@
expression $from.mm; position $from.p;
{{$alias}}
@@

(
... when != {{pin mm}}
    when != {{pin A}}
{{borrow @p}}(mm);
|
\(mmput(mm)\|mmput(A)\);
... when != {{pin mm}}
    when != {{pin A}}
{{borrow @p}}(mm);
)
//% end

// The coccicheck modes of a drop-in rule that reports (patch is its own).
//% report_modes()
virtual context
virtual org
virtual report
//% end
