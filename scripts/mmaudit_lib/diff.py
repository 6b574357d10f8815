"""Compare two audits: fixed, new, still open, and changed verdicts."""

from .audit import FINDINGS, VERDICTS
from .report import md_code, md_text


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
    groups = {"fixed": [], "new": [], "still open": [], "removed": [], "verdict changed": []}
    for o, n in match(old["sites"], new["sites"]):
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
    return groups


def _where(s):
    return "%s %s() %s" % (md_code("%s:%d" % (s["file"], s["line"])), md_text(s["function"] or "-"),
                           md_code("%s(%s)" % (s["api"], s["mm"] or "")))


def to_markdown(old, new, groups):
    name = lambda d: md_text("Linux " + (d["tree"]["version"] or d["tree"]["source"]))  # noqa: E731
    out = ["# mmaudit: %s → %s" % (name(old), name(new)), "",
           "| | %s | %s |" % (name(old), name(new)), "|---|---:|---:|"]
    for key in ("sites",) + VERDICTS:
        out.append("| %s | %s | %s |" % (key, md_text(old["summary"].get(key, 0)),
                                         md_text(new["summary"].get(key, 0))))
    out.append("")
    for title, items in groups.items():
        out += ["## %s (%d)" % (title.capitalize(), len(items)), ""]
        for o, n in items:
            if o and n:
                out.append("- %s: %s → %s%s" % (_where(n), o["verdict"], n["verdict"],
                                                "" if o["file"] == n["file"]
                                                else " (moved from %s)" % md_code(o["file"])))
            else:
                s = o or n
                out.append("- %s: %s (%s)" % (_where(s), s["verdict"],
                                              "gone in the new tree" if o else "new site"))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def run(old, new):
    """OLD and NEW: findings documents, checked by document.load()."""
    groups = compare(old, new)
    return groups, to_markdown(old, new, groups)
