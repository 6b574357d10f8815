"""Risk triage of each finding, from the tree itself: which architectures
can build the finding's file (its Makefiles and each architecture's own
Kconfig, kbuild.py) and which of those have TLB code that skips flushes on
mm_users (arches.py).

  high     an architecture that skips flushes on mm_users can build the file
  low      none can: what is left is the teardown race, not stale TLB entries
  unknown  Kconfig or the Makefiles could not say, or the shortcut scan did
           not finish, for an architecture that matters; the reason says why
"""

from . import arches as archesmod, kbuild

LEVELS = ("high", "unknown", "low")


def _cite(entry):
    return "%s:%d %s()" % (entry.file, entry.line, entry.function)


def assess(tree, rels, jobs=1, cache=None, configs=None):
    """{rel: {"risk", "arches_affected", "arches_building", "risk_reason"}}
    for the files RELS of TREE."""
    if not rels:
        return {}
    if not kbuild.tree_arches(tree):
        return {rel: {"risk": "unknown", "arches_affected": [], "arches_building": [],
                      "risk_reason": "the tree has no architectures (arch/*/Kconfig) to ask"}
                for rel in rels}
    table = archesmod.shortcuts(tree, jobs=jobs, cache=cache)
    build = kbuild.triage(tree, sorted(rels), configs=configs)
    out = {}
    for rel in sorted(rels):
        states = build.get(rel, {})
        building = sorted(a for a, (state, _) in states.items() if state == "yes")
        unknown = sorted(a for a, (state, _) in states.items() if state == "unknown")
        affected = [a for a in building if a in table]
        if affected:
            level = "high"
            reason = "built on %s, whose TLB code skips flushes on mm_users (%s)" % (
                ", ".join(affected), "; ".join(_cite(table[a][0]) for a in affected))
        elif [a for a in unknown if a in table]:
            doubtful = [a for a in unknown if a in table]
            level = "unknown"
            reason = "whether %s can build it is unknown: %s" % (
                ", ".join(doubtful), "; ".join("%s: %s" % (a, states[a][1]) for a in doubtful[:3]))
        elif table.failed:
            level = "unknown"
            reason = "the scan of the architectures' TLB code did not finish for %s" % (
                ", ".join(sorted(table.failed)[:3]))
        else:
            level = "low"
            reason = ("no architecture whose TLB code skips flushes on mm_users (%s) can build "
                      "it; built on %s: what is left is the teardown race" % (
                          ", ".join(sorted(table)) or "none in this tree",
                          ", ".join(building) or "no architecture"))
        out[rel] = {"risk": level, "arches_affected": affected, "arches_building": building,
                    "risk_reason": reason}
    return out
