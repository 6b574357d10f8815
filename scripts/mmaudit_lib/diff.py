"""Compare two audits: fixed, new, still open, and changed verdicts; and
the hazards that appeared, went or stayed, on the same matched sites."""

from .audit import FINDINGS, VERDICTS
from .document import SCHEMA_1
from .report import md_code, md_text

SITE_GROUPS = ("fixed", "new", "still open", "removed", "verdict changed")
HAZARD_GROUPS = ("appeared", "gone", "still present")


def _identity(site):
    return (site["file"], site["function"], site["api"], site["mm"])


def match(old_sites, new_sites):
    """Pairs (old, new), matched by file+function+call; then, for a function
    that moved file, by function+call alone.  Unmatched sides are None."""
    new_by_id = {}
    for s in new_sites:
        new_by_id.setdefault(_identity(s), []).append(s)
    pairs, rest_old = [], []
    for s in old_sites:
        bucket = new_by_id.get(_identity(s))
        if bucket:
            pairs.append((s, bucket.pop(0)))
        else:
            rest_old.append(s)
    rest_new = [s for bucket in new_by_id.values() for s in bucket]
    moved = {}
    for s in rest_new:
        moved.setdefault(_identity(s)[1:], []).append(s)
    for s in rest_old:
        bucket = moved.get(_identity(s)[1:]) if s["function"] else None
        if bucket:
            n = bucket.pop(0)
            rest_new.remove(n)
            pairs.append((s, n))
        else:
            pairs.append((s, None))
    pairs += [(None, s) for s in rest_new]
    return pairs


def compare(old, new):
    """{site group: [(old site, new site)], "hazards": {hazard group:
    [(old site, new site, hazard)]}}; a side is None where the site is
    missing from that audit."""
    groups = {g: [] for g in SITE_GROUPS}
    hazards = {g: [] for g in HAZARD_GROUPS}
    for o, n in match(old["sites"], new["sites"]):
        compare_hazards(o, n, hazards)
        was = o and o["verdict"] in FINDINGS
        now = n and n["verdict"] in FINDINGS
        if was and n is None:
            groups["removed"].append((o, n))
        elif was and not now:
            groups["fixed"].append((o, n))
        elif now and not was:
            groups["new"].append((o, n))
        elif was and now:
            groups["still open"].append((o, n))
        if o and n and o["verdict"] != n["verdict"]:
            groups["verdict changed"].append((o, n))
    groups["hazards"] = hazards
    return groups


def compare_hazards(o, n, hazards):
    """Sort the hazards of the matched sites O and N (either can be None)
    into HAZARDS by kind: a site has at most one hazard of each kind."""
    was = {h["kind"]: h for h in (o["hazards"] if o else [])}
    now = {h["kind"]: h for h in (n["hazards"] if n else [])}
    for kind, h in was.items():
        hazards["still present" if kind in now else "gone"].append((o, n, now.get(kind, h)))
    for kind, h in now.items():
        if kind not in was:
            hazards["appeared"].append((o, n, h))


def _where(s):
    return "%s %s() %s" % (md_code("%s:%d" % (s["file"], s["line"])), md_text(s["function"] or "-"),
                           md_code("%s(%s)" % (s["api"], s["mm"] or "")))


def _risk(o, n):
    """", risk high" for a side that has one; "risk low → high" when it changed."""
    was, now = (o or {}).get("risk"), (n or {}).get("risk")
    if was and now and was != now:
        return ", risk %s → %s" % (md_text(was), md_text(now))
    return ", risk %s" % md_text(now or was) if (now or was) else ""


def to_markdown(old, new, groups):
    name = lambda d: md_text("Linux " + (d["tree"]["version"] or d["tree"]["source"]))  # noqa: E731
    out = ["# mmaudit: %s → %s" % (name(old), name(new)), "",
           "| | %s | %s |" % (name(old), name(new)), "|---|---:|---:|"]
    for key in ("sites",) + VERDICTS:
        out.append("| %s | %s | %s |" % (key, md_text(old["summary"].get(key, 0)),
                                         md_text(new["summary"].get(key, 0))))
    out.append("| hazards | %s | %s |" % (_hazard_total(old), _hazard_total(new)))
    out.append("")
    for title in SITE_GROUPS:
        items = groups[title]
        out += ["## %s (%d)" % (title.capitalize(), len(items)), ""]
        for o, n in items:
            if o and n:
                out.append("- %s: %s → %s%s%s" % (_where(n), o["verdict"], n["verdict"],
                                                  "" if o["file"] == n["file"]
                                                  else " (moved from %s)" % md_code(o["file"]),
                                                  _risk(o, n)))
            else:
                s = o or n
                out.append("- %s: %s (%s)%s" % (_where(s), s["verdict"],
                                                "gone in the new tree" if o else "new site",
                                                _risk(None, s) if n else _risk(s, None)))
        out.append("")
    out += _hazards_markdown(old, new, groups["hazards"])
    return "\n".join(out).rstrip("\n") + "\n"


def _unrecorded(d):
    """A document migrated from schema 1, which did not look for hazards."""
    return d.get("migrated_from") == SCHEMA_1


def _hazard_total(d):
    return "not recorded" if _unrecorded(d) else str(sum(len(s["hazards"]) for s in d["sites"]))


def _hazards_markdown(old, new, hazards):
    out = ["## Hazards", ""]
    for side, d in (("old", old), ("new", new)):
        if _unrecorded(d):
            out += ["The %s audit is %s, which did not look for hazards: %s." % (
                side, md_code(SCHEMA_1), "every hazard of the new audit shows as appeared"
                if side == "old" else "the hazards of the old audit show as gone"), ""]
    for title in HAZARD_GROUPS:
        items = hazards[title]
        out += ["### %s (%d)" % (title.capitalize(), len(items)), ""]
        for o, n, h in items:
            site = n or o
            if n is None:
                state = "site gone in the new tree"
            elif o is None:
                state = "new site, %s" % n["verdict"]
            elif o["verdict"] != n["verdict"]:
                state = "%s → %s" % (o["verdict"], n["verdict"])
            else:
                state = n["verdict"]
            moved = "" if not (o and n) or o["file"] == n["file"] \
                else " (moved from %s)" % md_code(o["file"])
            out.append("- %s: %s (%s)%s: %s" % (_where(site), md_text(h["kind"]), state, moved,
                                                md_text(h["reason"])))
        out.append("")
    return out


def run(old, new):
    """OLD and NEW: findings documents, checked by document.load()."""
    groups = compare(old, new)
    return groups, to_markdown(old, new, groups)
