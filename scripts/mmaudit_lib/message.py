"""The commit message of a fix patch, written the way the subsystem writes it.

fix.py decides and makes the rewrite; this module writes what goes around
the diff: the author (identity), the subject (subject), the Fixes: tag
(fixes_tag), the explanation of one finding (message), and the
architectures whose TLB code makes the missing mm_users reference matter
(TreeLookups.arch_shortcuts, affected_archs).

What message() looks up in the whole tree (those architectures, the
existing mmdrop() calls) is kept by a TreeLookups made for that tree: make
one per tree and pass it to every message() for that tree, so that each
tree is searched once.

When the tree is a git work tree, its history is read: the subsystem's
subject prefix, its capitalisation, and the commit that added the borrow.
Without history the prefix comes from a table (PREFIXES), then from the
path, and no Fixes: tag is given."""

import collections
import datetime
import os
import re
import subprocess
import tempfile

from . import VERSION, UsageError
from . import arches, kbuild


# --------------------------------------------------------------------------
# git

def _git(tree, *args):
    """stdout of git ARGS run in TREE, or None when git fails."""
    try:
        proc = subprocess.run(["git"] + list(args), cwd=tree, capture_output=True,
                              env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"))
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "replace")


def is_git_tree(tree):
    """Is TREE the top of a git work tree?  A tree that merely sits inside
    some other repository (a test fixture inside mmaudit's own checkout, a
    tarball unpacked under a home directory kept in git) is not: that
    repository's history and configuration are not the kernel's."""
    if not tree or not os.path.isdir(tree):
        return False
    top = _git(tree, "rev-parse", "--show-toplevel")
    if not top or not top.strip():
        return False
    try:
        return os.path.samefile(top.strip(), tree)
    except OSError:
        return False


# --------------------------------------------------------------------------
# identity

# RFC 2606 and RFC 6761: names that no mail ever reaches.
RESERVED_NAMES = ("example", "example.com", "example.net", "example.org", "invalid", "test",
                  "localhost")


def reserved_domain(address):
    """Is the domain of the mail ADDRESS reserved (RFC 2606/6761)?"""
    domain = address.rsplit("@", 1)[-1].strip().strip(">").rstrip(".").lower()
    return any(domain == name or domain.endswith("." + name) for name in RESERVED_NAMES)


def identity(signoff, tree=None):
    """'Name <email>' of the patches' author and signer.

    --signoff (SIGNOFF) wins as given. Otherwise git config user.name and
    user.email, read in TREE when it is a git work tree so that its own
    configuration counts. An address from git config in a reserved domain
    is refused: a patch signed with it cannot be applied as is."""
    if signoff:
        return signoff
    cwd = tree if is_git_tree(tree) else None

    def get(key):
        try:
            return subprocess.run(["git", "config", key], cwd=cwd, capture_output=True,
                                  text=True).stdout.strip()
        except OSError:
            return ""
    name, email = get("user.name"), get("user.email")
    if not name or not email:
        raise UsageError("no author for the patches: pass --signoff 'Name <email>' "
                         "or set git config user.name and user.email")
    if reserved_domain(email):
        raise UsageError("git config user.email %s is in a reserved domain (RFC 2606/6761) "
                         "that no mail reaches: set a real address, or pass --signoff "
                         "'Name <email>' to name one explicitly" % email)
    return "%s <%s>" % (name, email)


# --------------------------------------------------------------------------
# subject

# Subject prefixes by path: the fallback for trees without git history.
# Checked against MAINTAINERS by tests/test_message.py.
#
# The third field says whether the subsystem capitalises the word after the
# prefix. It was decided from the subjects of the upstream commits listed in
# Debian's linux-source-6.1 and linux-source-6.12 changelog.Debian.gz (the
# stable updates), counting words after the prefix that are plain words:
# "powerpc/..." 42 capitalised to 11 lowercase, "KVM: x86/xen" 9 to 1 (KVM
# as a whole 836 to 150, and Documentation/process/maintainer-kvm-x86.rst
# says "Capitalize the first word"), "dmaengine: idxd" 34 to 21, "usb: gadget: legacy" 0 to 1, "usb: gadget: f_fs" 20 to 10,
# "vhost:" 11 to 19, "bcachefs" 9 to 4, "vfio" 90 to 33.
PREFIXES = [
    ("arch/powerpc/platforms/book3s/vas-api.c", "powerpc/vas", True),
    ("arch/x86/kvm/", "KVM: x86/xen", True),
    ("drivers/dma/idxd/", "dmaengine: idxd", True),
    ("drivers/usb/gadget/legacy/", "usb: gadget: legacy", False),
    ("drivers/usb/gadget/function/", "usb: gadget: f_fs", True),
    ("drivers/vhost/", "vhost", False),
    ("fs/bcachefs/", "bcachefs", True),
    ("drivers/vfio/", "vfio", True),
]

# "KVM: x86/xen: " of "KVM: x86/xen: Take ...": colon-separated segments
# without blanks (a segment with a blank is already the summary, and
# "Revert "...": " or "Merge tag 'x' of git://..." give no prefix).
SUBJECT_PREFIX = re.compile(r"^([^:\s]+(?:: [^:\s]+)*): (\S+)")
HISTORY = 50        # commits read per path
ENOUGH = 3          # prefixed subjects of the file itself before its directory is read


def _history(tree, path):
    out = _git(tree, "log", "-n", str(HISTORY), "--no-merges", "--format=%s", "--", path)
    return [m for m in (SUBJECT_PREFIX.match(s) for s in (out or "").splitlines()) if m]


def _capitalised(word):
    """True, False, or None for a word that says nothing (an identifier,
    an acronym, a number)."""
    if re.fullmatch(r"[A-Z][a-z]+", word):
        return True
    if re.fullmatch(r"[a-z]+", word):
        return False
    return None


def history_prefix(tree, rel):
    """(prefix, capitalise) from the subjects of the commits that touched
    REL, then its directory; None without history."""
    if not is_git_tree(tree):
        return None
    found = _history(tree, rel)
    directory = os.path.dirname(rel)
    if len(found) < ENOUGH and directory:
        found = _history(tree, directory)
    if not found:
        return None
    prefix = collections.Counter(m.group(1) for m in found).most_common(1)[0][0]
    votes = [_capitalised(m.group(2)) for m in found if m.group(1) == prefix]
    return prefix, votes.count(True) > votes.count(False)


def table_prefix(rel):
    """(prefix, capitalise) from PREFIXES, else from the path."""
    for path, prefix, capitalise in PREFIXES:
        if rel.startswith(path):
            return prefix, capitalise
    parts = rel.split("/")
    return ": ".join(parts[:-1][-2:]) or parts[0], False


def subsystem(tree, rel):
    """(subject prefix, capitalise the word after it) for a patch to REL."""
    return history_prefix(tree, rel) or table_prefix(rel)


def subject(tree, rel, summary):
    """"prefix: summary" for a patch to REL, the summary's first word
    capitalised as the subsystem does it ("[PATCH] " is not included)."""
    prefix, capitalise = subsystem(tree, rel)
    first = summary.split(" ", 1)[0]
    if capitalise and _capitalised(first) is False:
        summary = summary[0].upper() + summary[1:]
    elif not capitalise and _capitalised(first) is True:
        summary = summary[0].lower() + summary[1:]
    return "%s: %s" % (prefix, summary)


# --------------------------------------------------------------------------
# Fixes:

def fixes_tag(tree, rel, line):
    """'Fixes: <12 hex> ("subject")' for the commit that added line LINE of
    REL (the borrow), when TREE is a git work tree; None otherwise.

    git blame -M -C follows moved and copied lines. A commit that only
    renamed use_mm() to kthread_use_mm() on that line did not add the
    borrow: it is ignored and the line blamed again."""
    if not is_git_tree(tree):
        return None
    ignored = []
    for _ in range(8):
        out = _git(tree, "blame", "-M", "-C", "--porcelain",
                   *["--ignore-rev=" + c for c in ignored],
                   "-L", "%d,%d" % (line, line), "--", rel)
        if not out:
            return None
        head, *rest = out.split("\n")
        sha = head.split(" ")[0]
        fields = dict((l.split(" ", 1) + [""])[:2] for l in rest if l and not l.startswith("\t"))
        code = next((l[1:] for l in rest if l.startswith("\t")), "")
        if not re.fullmatch(r"[0-9a-f]{40,64}", sha) or not sha.strip("0"):
            return None         # not committed yet
        if "boundary" in fields and (_git(tree, "rev-parse", "--is-shallow-repository")
                                     or "").strip() == "true":
            return None         # the edge of a shallow clone, not where the line came from
        if _renamed_api(tree, sha, fields.get("filename", rel), code):
            ignored.append(sha)
            continue
        return 'Fixes: %s ("%s")' % (sha[:12], fields.get("summary", "").strip())
    return None


def _renamed_api(tree, sha, path, code):
    """Did commit SHA only turn use_mm( into kthread_use_mm( on the line CODE?"""
    if "kthread_use_mm(" not in code:
        return False
    old = code.replace("kthread_use_mm(", "use_mm(").strip()
    diff = _git(tree, "show", "--format=", "--no-color", "-U0", sha, "--", path) or ""
    return any(l.startswith("-") and not l.startswith("---") and l[1:].strip() == old
               for l in diff.split("\n"))


# --------------------------------------------------------------------------
# Architectures whose TLB code trusts mm_users
#
# Found by arches.py (cocci/arch_shortcuts.cocci over arch/*/, facts cached
# by file content); this section keeps message()'s view of them.


class Shortcut(collections.namedtuple("Shortcut", "file line condition function")):
    """An mm_users shortcut: FILE (relative to the tree), LINE, the text of
    the whole CONDITION, and the FUNCTION that holds it; also, outside the
    tuple, its KIND ("single user" or "dying mm") and normalised TEST
    ("mm_users <= 1")."""

    def __new__(cls, file, line, condition, function, kind=None, test=None):
        self = super().__new__(cls, file, line, condition, function)
        self.kind, self.test = kind, test
        return self

    @classmethod
    def of(cls, entry):
        """The Shortcut of an arches.Shortcut."""
        return cls(entry.file, entry.line, entry.condition, entry.function, entry.kind,
                   entry.test)


class TreeLookups:
    """What message() looks up in one kernel tree, each looked up once, on
    first use: the mm_users shortcuts of the architectures' TLB code
    (arch_shortcuts, affected_archs) and the files that call mmdrop()
    (existing_drops). Make one per tree; the tree is not expected to change
    while it is in use."""

    def __init__(self, tree):
        self.tree = tree
        self._shortcuts = None
        self._drop_files = None
        self._builds = {}

    def arch_shortcuts(self):
        """{arch: [Shortcut(file, line, condition, function)]}: the TLB and
        SMP code under arch/*/ that compares mm_users with 0 or 1
        (atomic_read(&X->mm_users)) to skip a flush or to narrow it to this
        CPU, as arches.shortcuts() finds it. Checks under CONFIG_DEBUG_VM and
        inside BUG/WARN assertions do not count. The condition is the text of
        the whole if (or while, or return) condition. The files that could
        not be analyzed are in arch_failures()."""
        if self._shortcuts is None:
            self._shortcuts = _scan_shortcuts(self.tree)
        return self._shortcuts

    def arch_failures(self):
        """{file: reason}: the files under arch/ whose mm_users reads could
        not all be judged, so arch_shortcuts() may miss theirs."""
        return getattr(self.arch_shortcuts(), "failed", {})

    def affected_archs(self, rel):
        """Architectures whose TLB code skips flushes on mm_users and that
        can build REL: as the tree's Makefiles and each architecture's
        Kconfig say (kbuild.py; one whose answer is unknown stays in). A
        tree without arch/*/Kconfig: its own architecture for a file under
        arch/X/, every such architecture otherwise."""
        shortcuts = self.arch_shortcuts()
        if rel not in self._builds:
            self._builds[rel] = (kbuild.triage(self.tree, [rel]).get(rel, {})
                                 if kbuild.tree_arches(self.tree) else {})
        states = self._builds[rel]
        if states:
            return sorted(a for a in shortcuts if states.get(a, ("unknown",))[0] != "no")
        parts = rel.split("/")
        if parts[0] == "arch" and len(parts) > 2:
            return [parts[1]] if parts[1] in shortcuts else []
        return sorted(shortcuts)

    @staticmethod
    def describe_shortcut(entry):
        """'arch/mips/kernel/smp.c:545 flush_tlb_mm(): mm_users == 0'."""
        return describe_shortcut(entry)

    def existing_drops(self, tag, field):
        """[(function, file, line)] where the tree already calls mmdrop() on
        FIELD of a struct TAG: through a variable declared struct TAG *, or
        a local copy of its FIELD."""
        if self._drop_files is None:
            self._drop_files = _drop_files(self.tree)
        return _drops_in(self.tree, self._drop_files, tag, field)


def arch_shortcuts(tree):
    """TreeLookups(TREE).arch_shortcuts(), searched afresh on every call."""
    return TreeLookups(tree).arch_shortcuts()


def affected_archs(tree, rel):
    """TreeLookups(TREE).affected_archs(REL), searched afresh on every call."""
    return TreeLookups(tree).affected_archs(rel)


def _scan_shortcuts(tree):
    """arches.shortcuts(TREE) as {arch: [Shortcut]}, with its .failed and
    .excluded; spatch's facts come from the audit's cache."""
    table = arches.shortcuts(tree, cache=arches.default_cache())
    return arches.Table(((arch, [Shortcut.of(e) for e in entries])
                         for arch, entries in table.items()),
                        table.excluded, table.failed, table.files)


def shortcuts_in(text, basename):
    """[(line, condition, function)] of the mm_users shortcuts in one C
    file's TEXT named BASENAME (arches.shortcuts_in_text())."""
    return [(e.line, e.condition, e.function)
            for e in arches.shortcuts_in_text(text, basename)]


def describe_shortcut(entry):
    """'arch/mips/kernel/smp.c:545 flush_tlb_mm(): mm_users == 0' (the
    whole condition for a Shortcut made without its test)."""
    return "%s:%d %s%s" % (entry.file, entry.line,
                           "%s(): " % entry.function if entry.function else "",
                           getattr(entry, "test", None) or entry.condition)


# --------------------------------------------------------------------------
# C text helpers (shared with fix.py)

def split_functions(text):
    """{function name: its text}, for definitions that start in column 0."""
    out, current, buf = {}, None, []
    for line in text.split("\n"):
        m = re.match(r"^[A-Za-z_][\w \t\*]*?\b(\w+)\s*\(", line)
        if m and not line.rstrip().endswith(";"):
            if current:
                out[current] = "\n".join(buf)
            current, buf = m.group(1), []
        buf.append(line)
    if current:
        out[current] = "\n".join(buf)
    return out


def functions_with(changes, needle):
    """Functions in which the rewrite added NEEDLE."""
    found = set()
    for old, new in changes.values():
        before = split_functions(old)
        for fn, text in split_functions(new).items():
            if text.count(needle) > before.get(fn, "").count(needle):
                found.add(fn)
    return found


# --------------------------------------------------------------------------
# The patch around the message

def unified_diff(changes):
    chunks = []
    with tempfile.TemporaryDirectory(prefix="mmaudit-") as tmp:
        for rel, (old, new) in sorted(changes.items()):
            a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
            for path, text in ((a, old), (b, new)):
                with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                    f.write(text)
            proc = subprocess.run(["diff", "-u", "-p", "--label", "a/" + rel, "--label",
                                   "b/" + rel, a, b], capture_output=True, text=True)
            chunks.append("diff --git a/%s b/%s\n%s" % (rel, rel, proc.stdout))
    return "".join(chunks)


def diffstat(diff):
    proc = subprocess.run(["git", "apply", "--stat", "-"], input=diff, capture_output=True,
                          text=True)
    return proc.stdout


def maintainers(tree, rels):
    script = os.path.join(tree, "scripts", "get_maintainer.pl")
    if not os.path.exists(script):
        return []
    proc = subprocess.run(["perl", script, "--no-rolestats", "--no-git", "--no-git-fallback",
                           "--no-tree", "-f"] + sorted(rels), cwd=tree, capture_output=True,
                          text=True)
    return [l.strip() for l in proc.stdout.splitlines() if "@" in l]


def patch_date():
    """SOURCE_DATE_EPOCH when set (reproducible output), else now."""
    return datetime.datetime.fromtimestamp(
        int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or datetime.datetime.now().timestamp(),
        datetime.timezone.utc)


def wrap(text, width=72):
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = (line + " " + w) if line else w
    return "\n".join(lines + [line])


# --------------------------------------------------------------------------
# The explanation

API = "kthread_use_mm() takes no mm_users reference of its own."


def _code(e):
    return e["what"].split(" — ")[0].strip()


def _note(e):
    return e["what"].split(" — ", 1)[1] if " — " in e["what"] else ""


def _cite(e):
    return "  %s:%d %s" % (e["file"], e["line"], _code(e))


def _names(functions):
    names = ["%s()" % f for f in functions]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _ref_step(note):
    """Is NOTE the audit's note on a step that takes or drops a reference?"""
    return note in ("mm_count taken", "mmgrab(): mm_count only") or note.startswith(
        "the get_task_mm() reference is dropped") or note.endswith(
        ("pins the stored mm", "pins the mm"))


def _store_groups(evidence):
    """[(store step, [its steps, in line order])]: each store with the
    mmgrab()/mmput() steps the audit found for it (audit.classify_store
    puts a step just before its store when its line comes first)."""
    groups, pending = [], []
    for i, e in enumerate(evidence):
        if e.get("store"):
            groups.append((e, pending + [e]))
            pending = []
        elif _ref_step(_note(e)):
            after = evidence[i + 1] if i + 1 < len(evidence) else None
            if after and after.get("store") and after["file"] == e["file"] and \
                    e["line"] < after["line"]:
                pending.append(e)
            elif groups and groups[-1][0]["file"] == e["file"]:
                groups[-1][1].append(e)
    return [(store, sorted(steps, key=lambda x: x["line"])) for store, steps in groups]


def _what_store_takes(store, steps):
    """One sentence: what the store at STORE keeps in its object."""
    s = store["store"]
    fn = s["function"]
    owner = "%s.%s" % (s["type"], s["field"]) if s.get("type") else "its %s field" % s["field"]
    m = re.search(r"=\s*(.+?);", _code(store))
    value = m.group(1).strip() if m else "the mm"
    notes = [_note(e) for e in steps]
    if s["class"] == "grab" and any(n.startswith("the get_task_mm() reference is dropped")
                                    for n in notes):
        return ("%s() stores %s in %s, then takes mm_count with mmgrab() and drops the "
                "mm_users reference with mmput(), so the object keeps mm_count only:"
                % (fn, value, owner))
    if s["class"] == "grab" and store.get("indirect"):
        return ("%s() stores %s in %s, and the %s it sets up with %s() holds mm_count "
                "for the object; no mm_users reference is taken:"
                % (fn, value, owner, "SVA bond" if "sva" in store["indirect"] else
                   "mmu notifier", store["indirect"]))
    if s["class"] == "grab":
        return ("%s() takes mm_count with mmgrab() and stores %s in %s; no mm_users "
                "reference is taken:" % (fn, value, owner))
    if s["class"] == "bare":
        where = " when %s" % " and ".join(s["guard"]) if s.get("guard") else ""
        return ("%s() stores %s in %s%s without taking any reference:" % (fn, value, owner, where))
    if s["class"] == "pinned":
        return "%s() stores %s in %s with an mm_users reference:" % (fn, value, owner)
    return "%s() stores %s in %s:" % (fn, value, owner)


def _drop_files(tree):
    """The files of TREE (relative paths, sorted) that call mmdrop()."""
    proc = subprocess.run(["grep", "-r", "-l", "-Z", "--include=*.c", "--include=*.h",
                           "-E", r"\bmmdrop[[:space:]]*\(", "."], cwd=tree, capture_output=True)
    return sorted(os.fsdecode(r)[2:] for r in proc.stdout.split(b"\0")[:-1])


def _drops_in(tree, files, tag, field):
    """TreeLookups.existing_drops() over FILES, the files of TREE that call
    mmdrop()."""
    declared = re.compile(r"\bstruct\s+%s\s*\*\s*(\w+)" % re.escape(tag))
    out = []
    for rel in files:
        try:
            with open(os.path.join(tree, rel), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if not declared.search(text):
            continue
        offset = 0
        for fn, body in split_functions(text).items():
            offset = max(text.find(body, offset), 0)
            owners = [re.escape(v) for v in declared.findall(body)]
            if not owners:
                continue
            field_of = r"(?:%s)\s*(?:->|\.)\s*%s" % ("|".join(owners), re.escape(field))
            names = [field_of] + [re.escape(a) for a in re.findall(
                r"\b(\w+)\s*=\s*%s\s*;" % field_of, body)]
            m = re.search(r"\bmmdrop\s*\(\s*(?:%s)\s*\)" % "|".join(names), body)
            if m:
                out.append((fn, rel, text.count("\n", 0, offset + m.start()) + 1))
    return out


def _explanation(lookups, p, changes):
    """Paragraphs that say which object holds what, and who borrows it."""
    site = p["site"]
    fn, mm = site["function"], site["mm"]
    paras = []
    groups = _store_groups(site["evidence"])
    for store, steps in groups:
        paras.append((_what_store_takes(store, steps), [_cite(e) for e in steps]))
    alias = [e for e in site["evidence"] if _note(e) == "local alias of the field"]
    borrow = "%s:%d" % (site["file"], site["line"])
    if alias:
        a = alias[0]
        text = ("%s() loads it at %s:%d (%s) and borrows it with kthread_use_mm() at line %d."
                % (fn, a["file"], a["line"], _code(a).rstrip(";"), site["line"])
                if a["file"] == site["file"] else
                "%s() loads it at %s:%d (%s) and borrows it with kthread_use_mm() at %s."
                % (fn, a["file"], a["line"], _code(a).rstrip(";"), borrow))
    elif groups:
        text = "%s() borrows %s with kthread_use_mm() at %s." % (fn, mm, borrow)
    else:
        text = ("%s() borrows %s with kthread_use_mm() at %s; no store of it was found."
                % (fn, mm, borrow))
    stores = [s["store"] for s, _ in groups]
    if site["verdict"] == "grab-only" and stores and stores[0]["type"]:
        tag = stores[0]["type"].split()[-1]
        drops = lookups.existing_drops(tag, stores[0]["field"])
        if drops:
            text += (" mmdrop() drops that mm_count reference in %s; nothing holds mm_users "
                     "for the borrow." % ", ".join("%s() (%s:%d)" % d for d in drops[:3]))
        else:
            text += " Nothing holds mm_users for the borrow."
    elif site["verdict"] == "unreferenced":
        freed = sorted(functions_with(changes, "mmdrop("))
        text += (" Nothing holds mm_count either%s, so the mm_struct itself is not kept "
                 "alive for the borrow." % (
                     ": struct %s is freed in %s without an mmdrop()" % (p["tag"], _names(freed))
                     if freed and p.get("tag") else ""))
    if p.get("indirect"):
        text += " " + p["indirect"].strip()
    paras.append(text)
    return paras


def _failure(lookups, p):
    """What goes wrong without mm_users, and on which architectures."""
    site = p["site"]
    fn = site["function"]
    archs = lookups.affected_archs(site["file"])
    shortcuts = lookups.arch_shortcuts()
    if not archs:
        return [API + " No architecture that can build %s has TLB code that skips flushes "
                "on mm_users, so the patch closes the teardown race only: when the owner exits, mm_users "
                "drops to 0 and __mmput() tears the address space down (exit_mmap()) while "
                "%s() may still have it loaded." % (site["file"], fn)]
    cites = ["  " + describe_shortcut(shortcuts[a][0]) for a in archs]
    return [(API + " While %s() has the mm loaded, mm_users counts only the owner's users, "
             "and the TLB code of %s uses that count to skip a flush or to keep it on the "
             "local CPU:" % (fn, archs[0] if len(archs) == 1 else
                             "these %d architectures" % len(archs)), cites),
            "So when a single-threaded owner unmaps memory, or when the owner exits and "
            "exit_mmap() unmaps everything with mm_users at 0, the flush can miss the CPU "
            "that %s() runs on, and %s() goes on through stale TLB entries into pages that "
            "may already be freed and reused." % (fn, fn)]


def _rewrite(p, changes):
    """What the patch does, from the plan."""
    site = p["site"]
    fn = site["function"]
    put = p.get("put") or "mmput"
    if site["verdict"] == "unreferenced":
        drops = sorted(functions_with(changes, "mmdrop("))
        storing = p.get("storing_functions") or []
        text = ("Take mm_count with mmgrab() where %s%s and drop it with mmdrop() where "
                "the struct %s is freed%s, so that the mm_struct stays valid; then " % (
                    "%s %s the mm" % (_names(storing), "stores" if len(storing) == 1 else "store")
                    if storing else "the mm is stored",
                    " (only when there is one: %s() allows for a task without an mm)" % fn
                    if p.get("nullable") else "",
                    p.get("tag", "owner"),
                    " (%s)" % ", ".join("%s()" % d for d in drops) if drops else ""))
    else:
        text = "Therefore "
    mode = p.get("mode")
    if mode == "wrap":
        text += ("borrow the mm in %s() only under mmget_not_zero() and %s() it after "
                 "kthread_unuse_mm(); when the address space is already gone, skip the "
                 "copy%s." % (fn, put, " and leave %s at -EFAULT" % p["errvar"]
                              if p.get("errvar") else ""))
    elif mode == "fail":
        text += ("take mm_users with mmget_not_zero() before %s() borrows the mm and %s() "
                 "it after kthread_unuse_mm(). When the address space is already gone, fail "
                 "the request as %s() does when it has an error: set %s to -EFAULT "
                 "and call %s()." % (fn, put, p["caller"], p["error"], p["done"]))
    elif mode == "label" or p.get("label"):
        text += ("take mm_users with mmget_not_zero() before %s() borrows the mm and %s() "
                 "it after kthread_unuse_mm(); when the address space is already gone, %s"
                 "jump to the function's existing exit label, %s." % (
                     fn, put, "set %s to -EFAULT and " % p["errvar"] if p.get("errvar") else "",
                     p["label"]))
    else:
        text += ("take mm_users with mmget_not_zero() before %s() borrows the mm, returning "
                 "-EFAULT when the address space is already gone, and %s() it after "
                 "kthread_unuse_mm()." % (fn, put))
    if put != "mmput" and p.get("put_why"):
        text += " " + _sentence(p["put_why"])
    guard = _guard_reason(p)
    if guard:
        text += " " + guard
    for note in p.get("notes") or []:
        text += " " + _sentence(note)
    return text


def _sentence(text):
    text = text.strip()
    if text and _capitalised(text.split()[0]) is False:
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _guard_reason(p):
    """Why mmdrop() checks for a stored mm, when it does."""
    if not p.get("guarded") or p.get("nullable"):
        return ""
    field = p.get("field", "mm")
    for e in p["site"]["evidence"]:
        s = e.get("store")
        if not s or s["class"] != "bare":
            continue
        if s.get("freed_before"):
            return ("mmdrop() checks the field first, because an error path of %s() "
                    "frees the struct %s (%s:%d) without passing the store."
                    % (s["function"], p.get("tag", "owner"), e["file"], s["freed_before"]))
        if s.get("guard"):
            return ("mmdrop() checks the field first, because %s() stores the mm only when %s."
                    % (s["function"], " and ".join(s["guard"])))
    return "mmdrop() checks that %s was stored first." % field


def _render(para):
    """A paragraph: prose, wrapped, or (prose, cited lines) with the cited
    lines right under the prose, not wrapped."""
    if isinstance(para, tuple):
        prose, cites = para
        return "\n".join([wrap(prose)] + list(cites))
    return wrap(para)


def message(tree, data, p, changes, author, extra=None, lookups=None):
    """The git format-patch mbox of one fix: P is fix.plan()'s dict,
    CHANGES {path: (old, new)}, AUTHOR 'Name <email>'. EXTRA, a paragraph
    or a list of them, goes before the "Found by" line. LOOKUPS is the
    TreeLookups of TREE, shared by the messages for one tree; None makes a
    new one, which searches the tree again."""
    if lookups is None:
        lookups = TreeLookups(tree)
    site = p["site"]
    summary = ("take an mm_users reference around kthread_use_mm()"
               if site["verdict"] == "grab-only" else
               "pin the mm borrowed by kthread_use_mm()")
    paras = _explanation(lookups, p, changes) + _failure(lookups, p) + [_rewrite(p, changes)]
    if subsystem(tree, site["file"])[0].startswith("KVM:"):
        # Documentation/process/maintainer-kvm-x86.rst: "lead with a short
        # blurb on the actual changes, and then follow up with the context".
        change = paras.pop()
        if change.startswith("Therefore "):
            change = change[len("Therefore "):]
            change = change[0].upper() + change[1:]
        paras.insert(0, change)
    if extra:
        paras += [extra] if isinstance(extra, str) else list(extra)
    paras.append("Found by mmaudit %s, whole-tree audit (%s verdict), on Linux %s." % (
        VERSION, site["verdict"], data["tree"]["version"] or data["tree"]["source"]))
    body = "\n\n".join(_render(para) for para in paras)
    diff = unified_diff(changes)
    fixes = fixes_tag(tree, site["file"], site["line"])
    head = ["From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
            "From: %s" % author,
            "Date: %s" % patch_date().strftime("%a, %d %b %Y %H:%M:%S +0000"),
            "Subject: [PATCH] %s" % subject(tree, site["file"], summary), ""]
    trailer = [""] + ([fixes, "Cc: stable@vger.kernel.org"] if fixes else [])
    trailer += ["Signed-off-by: %s" % author] + ["Cc: %s" % c for c in maintainers(tree, changes)]
    return "\n".join(head + [body] + trailer + ["---", diffstat(diff).rstrip("\n"), "",
                                                diff.rstrip("\n"), "-- ", "mmaudit %s" % VERSION, ""])
