// Fragments of the rules (see scripts/gen-cocci): what a store of an mm into
// a struct field holds.  A store is "X->fld = E" or "X.fld = E", its
// position ps on fld.

// NULL resets are not stores of an mm.
//% null_store_rule(deps=)
@null_store$deps@
expression X; identifier fld; position ps;
@@

\(X->fld@ps\|X.fld@ps\) = NULL
//% end

// get_task_mm() then mmgrab() then mmput() (at pp): only mm_count is left.
// The store is to a field of X (a pointer) or S (a struct).
//% users_dropped(X, S, fld, pp=)
\($X->$fld@ps\|$S.$fld@ps\) = get_task_mm(...);
...
mmgrab(\($X->$fld\|$S.$fld\));
...
mmput$pp(\($X->$fld\|$S.$fld\));
//% end

// Holders that keep mm_count for as long as the object keeps them: an SVA
// bond or an mmu notifier registered on the mm (each takes mmgrab()).
// VAR is declared as the set of them (and of ALSO, if given: "a, b, ").
//% holder_set(var, also=)
identifier $var = {${also}iommu_sva_bind_device, mmu_notifier_register,
  __mmu_notifier_register, mmu_notifier_get, mmu_interval_notifier_insert};
//% end

// CALL (mmgrab(), or a holder) takes the value E, then E is stored in a
// field of X (a pointer) or S (a struct).
//% held_before(call, X, S)
$call(..., E, ...)
...
\($X->fld@ps\|$S.fld@ps\) = E;
//% end

// E is stored, then CALL takes it, or the field.
//% held_after(call, X, S)
\($X->fld@ps\|$S.fld@ps\) = E;
...
$call(..., \(E\|$X->fld\|$S.fld\), ...)
//% end

// The two rules BEFORE and AFTER that find an mmgrab() (at PB, PA) of the
// value stored at PS (in store.X's field FLD), before or after the store.
//% grab_rules(before, after, fld, ps, pb, pa)
@$before exists@
expression store.X, store.E;
identifier $fld;
position $ps;
position $pb;
@@

{{held_before mmgrab@$pb X X}}

@$after exists@
expression store.X, store.E;
identifier $fld;
position $ps;
position $pa;
@@

{{held_after mmgrab@$pa X X}}
//% end
