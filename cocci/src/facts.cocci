// Fragments of the rules (see scripts/gen-cocci): what the fact rules share.

// The start of their @initialize:python@ rule: emit() prints a fact,
// shown() an expression as written in C.
//% fact_init()
@initialize:python@
@@

import json
import re

{{python emit shown}}
//% end

// RULE ("unpinned", "nopin") matched: a fact of its name; else "pinned", for KEY
// (inherited from KEYRULE).  The verdict needs a fact either way.
// PINNED names the positive fact; BIND and EXTRA add a binding and fields.
//% pinned_or_not(rule, key, keyrule, pinned=pinned, bind=, extra=)
@script:python depends on $rule@
$key << $keyrule.$key;
$bind
@@

emit("$rule", $key[0]$extra)

// The verdict needs a fact either way: a missing fact is never a pin.
@script:python depends on !$rule@
$key << $keyrule.$key;
$bind
@@

emit("$pinned", $key[0]$extra)
//% end

// A "pin" fact for KEY (inherited from KEYRULE): the get that RULE found at
// POS, by the name of the function called there.
//% pin_fact(key, keyrule, rule, pos)
@pin_api@
position $rule.$pos;
identifier how;
@@

how@$pos(...)

@script:python@
$key << $keyrule.$key;
$pos << $rule.$pos;
how << pin_api.how;
@@

emit("pin", $key[0], how=str(how), at=int($pos[0].line), at_func=$pos[0].current_element)
//% end

// Their last rule.

//% done_rule()
// Last rule: the file was analyzed to the end.  A file without this fact
// (a timeout, a crash, a killed worker) is unanalyzed, whatever it printed.
@script:python@
@@

print("MMAUDIT " + json.dumps({"kind": "done", "files": cocci.files()}), flush=True)
//% end

// The facts of the aliases that rule ALIAS found: pinned or not, by rule UNPINNED.
//% alias_facts(alias, unpinned)
@script:python depends on $alias && $unpinned@
p << site.p;
A << $alias.A;
@@

emit("alias_unpinned", p[0], alias=shown(A))

@script:python depends on $alias && !$unpinned@
p << site.p;
A << $alias.A;
@@

emit("alias_pinned", p[0], alias=shown(A))
//% end
