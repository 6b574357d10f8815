"""Python helpers of the rules: scripts/gen-cocci copies the functions a
rule names ({{python shown emit}}) into its @initialize:python@ rule.
Each function must stand alone: a rule imports json and re itself."""

import json
import re


def shown(e):
    """spatch prints "f ( & a -> b [ i ] , ! c )"; show it as written in C."""
    e = re.sub(r" ?(->|\.|\[|\]|\() ?", r"\1", str(e))
    e = re.sub(r" ([),])", r"\1", e)
    # A prefix operator follows no operand (a name, a literal, ")" or "]").
    return re.sub(r"(?:^|(?<=[(\[])|(?<=[^\w)\]'\"] ))([&*!~-]) ", r"\1", e)


def emit(kind, p, **facts):
    """One fact, at position P: a line "MMAUDIT <json>"."""
    facts.update(kind=kind, file=p.file, line=int(p.line), col=int(p.column),
                 func=p.current_element)
    print("MMAUDIT " + json.dumps(facts, sort_keys=True), flush=True)
