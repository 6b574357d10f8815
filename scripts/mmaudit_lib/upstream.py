"""`mmaudit upstream-series`: a git format-patch series for the kernel.

1/2 writes the mm_users requirement into the kernel-doc of
kthread_use_mm() (kernel/kthread.c); 2/2 adds the drop-in rule,
cocci/use_mm.cocci as it is when this runs, as
scripts/coccinelle/api/kthread_use_mm.cocci, and lists it in MAINTAINERS
so that checkpatch has nothing to ask.  The cover letter says what the
rule reports on the given tree: it is run with `make coccicheck` in a
hard-linked scratch copy of the tree with the series' files in place
(written as new files, never through a link), so the tree itself is only
read.

The patches are made by git format-patch itself, in a scratch repository
that holds only the files the series touches, with no configuration of
the user's (so no diff.noprefix, format.* or signing setting changes
them)."""

import os
import re
import shutil
import signal
import subprocess
import tempfile

from . import VERSION, UsageError, message, spatch
from .tree import kernel_version

KTHREAD = "kernel/kthread.c"
MMU_CONTEXT = "mm/mmu_context.c"
RULE = "scripts/coccinelle/api/kthread_use_mm.cocci"
THREAD = "https://lore.kernel.org/all/20200203201745.29986-2-aarcange@redhat.com/"
COVER_SUBJECT = ("kthread_use_mm(): document the mm_users requirement and add a "
                 "coccinelle check")
SUMMARIES = ("document that kthread_use_mm() callers must hold an mm_users reference",
             "add kthread_use_mm.cocci")
# Where the rule is listed in MAINTAINERS: the section that reviews mm
# lifetimes (it was split in later trees).  No such section: no entry.
MM_SECTIONS = ("MEMORY MANAGEMENT", "MEMORY MANAGEMENT - CORE")
REPORT_LINE = re.compile(r"^(?:\./)?(?P<file>[^\s:][^:]*):(?P<line>\d+):\d+-\d+: ")
COMMENT_WIDTH = 74      # " * " + 74 columns: within 80
BODY_WIDTH = 72


def rule_path():
    return os.path.join(spatch.COCCI_DIR, "use_mm.cocci")


# --------------------------------------------------------------------------
# Reading the tree

def _read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


def _encode(text):
    return text.encode("utf-8", "surrogateescape")


DEFINITION = re.compile(r"^(?P<head>[A-Za-z_][^\n;{}()]*\bkthread_use_mm)\s*\(\s*struct\s+"
                        r"mm_struct\s*\*\s*(?P<param>\w+)\s*\)\s*\{", re.M)


def kthread_source(tree):
    """The text of kernel/kthread.c, which must define kthread_use_mm()."""
    path = os.path.join(tree, KTHREAD)
    text = _read(path) if os.path.isfile(path) else None
    if text is not None and DEFINITION.search(text):
        return text
    old = os.path.join(tree, MMU_CONTEXT)
    if os.path.isfile(old) and re.search(r"^void\s+use_mm\s*\(", _read(old), re.M):
        raise UsageError("%s: this tree has use_mm() in %s (Linux before 5.8); the series "
                         "targets kthread_use_mm() in %s (5.8 and later)"
                         % (tree, MMU_CONTEXT, KTHREAD))
    raise UsageError("%s: not a kernel tree with kthread_use_mm(): no definition of it in %s"
                     % (tree, KTHREAD))


# --------------------------------------------------------------------------
# 1/2: the kernel-doc

def requirement(param):
    """The kernel-doc paragraph that states the requirement, about PARAM."""
    return ("The caller must hold an mm_users reference on @{p} from before this call "
            "until after the matching kthread_unuse_mm(), and drop it (mmput()) only then.  "
            "Take it with mmget_not_zero() when only an mm_count reference (mmgrab()) keeps "
            "@{p}, as it fails once the address space is gone; with mmget() when an mm_users "
            "reference is already held; or with get_task_mm().  kthread_use_mm() takes no "
            "mm_users reference itself: its mm_count reference keeps the mm_struct, not the "
            "address space.  Without mm_users, architectures that trust that count to skip a "
            "TLB flush, or to keep it on the local CPU, can leave stale TLB entries on this "
            "CPU, and the owner's exit can tear the address space down (exit_mmap()) while "
            "the kthread still uses it.  Hold the reference for the borrow only, not for the "
            "lifetime of the object that stores @{p}, so that the owner's exit can still free "
            "the address space.").format(p=param)


def context(body):
    """The Context: line for kthread_use_mm(), from what its BODY does."""
    text = "Process context, from a kthread that has no mm of its own (current->mm is NULL)"
    if re.search(r"\blocal_irq_enable\s*\(", body):
        text += ", with interrupts enabled"
    return text + "."


def _comment_lines(text, width=COMMENT_WIDTH):
    """Prose as kernel-doc comment lines (" * ..."), wrapped."""
    return [" * " + l for l in message.wrap(text, width).split("\n")]


def _section(line):
    """The name of a kernel-doc section that LINE (" * Name: ...") opens, or None."""
    m = re.match(r"^\s*\*\s*(Context|Returns?|Return value|Locking|Note|Notes|Example)\s*:",
                 line, re.I)
    return m.group(1).lower() if m else None


def document(text):
    """(new text of kernel/kthread.c, what changed): the kernel-doc of
    kthread_use_mm() states the mm_users requirement.  A missing comment
    becomes a full kernel-doc; a plain comment there becomes its
    description."""
    m = DEFINITION.search(text)
    if not m:
        raise UsageError("%s: no definition of kthread_use_mm()" % KTHREAD)
    param = m.group("param")
    end = _function_end(text, m.end() - 1)
    body = text[m.end():end]
    before = text[:m.start()]
    stripped = before.rstrip(" \t\n")
    comment, start = None, m.start()
    if stripped.endswith("*/"):
        opening = stripped.rfind("/*")
        if opening >= 0 and (opening == 0 or stripped[opening - 1] == "\n"):
            comment, start = stripped[opening:], opening
    done = {"added": False, "context": False}
    para = _comment_lines(requirement(param))
    if comment is not None and comment.startswith("/**") and \
            re.match(r"/\*\*\s*\n\s*\*\s*kthread_use_mm\b", comment):
        if "mm_users" in comment:
            raise UsageError("%s: the kernel-doc of kthread_use_mm() already mentions mm_users; "
                             "nothing to document" % KTHREAD)
        lines = comment.split("\n")[:-1]        # without " */"
        at = next((i for i, l in enumerate(lines) if _section(l) in ("context", "return",
                                                                      "returns", "locking")),
                  len(lines))
        head, tail = lines[:at], lines[at:]
        while head and head[-1].strip() == "*":
            head.pop()
        new = head + [" *"] + para
        if tail:
            new += [" *"] + tail
        if not any(_section(l) == "context" for l in lines):
            while new[-1].strip() == "*":
                new.pop()
            new += [" *"] + _comment_lines("Context: " + context(body))
            done["context"] = True
        doc = "\n".join(new + [" */"])
    else:
        done["added"], done["context"] = True, True
        new = ["/**", " * kthread_use_mm - make the calling kthread operate on an address space",
               " * @%s: address space to operate on" % param, " *"]
        if comment is not None:     # a plain comment: keep it as the description
            inner = re.sub(r"^/\*+|\*+/$", "", comment)
            prose = " ".join(re.sub(r"^\s*\*?", "", l).strip() for l in inner.split("\n"))
            if prose.strip():
                new += _comment_lines(prose) + [" *"]
        new += para + [" *"] + _comment_lines("Context: " + context(body)) + [" */"]
        doc = "\n".join(new)
    if comment is None:
        return text[:start] + doc + "\n" + text[start:], done
    return text[:start] + doc + text[start + len(comment):], done


def _function_end(text, brace):
    depth = 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(text)


# --------------------------------------------------------------------------
# 2/2: MAINTAINERS

def maintainers_entry(text, rel=RULE):
    """(new MAINTAINERS text, section name, its first L: list) with an
    F: line for REL in the memory management section, in alphabetical
    order; None when the tree has no such section or already lists REL."""
    if re.search(r"^F:\s*%s\s*$" % re.escape(rel), text, re.M):
        return None
    lines = text.split("\n")
    for name in MM_SECTIONS:
        try:
            top = lines.index(name)
        except ValueError:
            continue
        end = top + 1
        while end < len(lines) and lines[end].strip():
            end += 1
        files = [i for i in range(top + 1, end) if lines[i].startswith("F:")]
        if not files:
            continue
        at = next((i for i in files if lines[i][2:].strip() > rel), files[-1] + 1)
        lists = [l[2:].strip() for l in lines[top + 1:end] if l.startswith("L:")]
        new = lines[:at] + ["F:\t" + rel] + lines[at:]
        return "\n".join(new), name, (lists[0].split()[0] if lists else None)
    return None


# --------------------------------------------------------------------------
# Running the rule

def _clean_env(**extra):
    """The environment without variables that change what make coccicheck does."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "COCCI", "MODE", "J", "M", "O", "C", "V", "SPFLAGS", "DEBUG_FILE", "KBUILD_EXTMOD",
        "KBUILD_OUTPUT", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GNUMAKEFLAGS")}
    env.update(extra)
    return env


def coccicheck(tree, rule, jobs=2):
    """The report lines of `make -s coccicheck MODE=report COCCI=RULE` in
    TREE, sorted by file and line."""
    proc = _run_group(["make", "-s", "coccicheck", "MODE=report", "COCCI=" + rule,
                       "J=%d" % jobs], tree, _clean_env(LC_ALL="C"))
    out = proc.stdout + proc.stderr
    if "Skipping coccinelle SmPL patch" in out:
        raise UsageError("make coccicheck skipped %s: %s" % (rule, " ".join(
            l.strip() for l in out.splitlines() if "requires" in l or "You have" in l)))
    if proc.returncode != 0 or "coccicheck failed" in out:
        last = [l for l in out.splitlines() if l.strip()][-1:] or ["no output"]
        raise UsageError("make coccicheck MODE=report COCCI=%s failed (exit %d): %s"
                         % (rule, proc.returncode, last[0][:300]))
    found = [l for l in proc.stdout.splitlines() if REPORT_LINE.match(l)]
    return sorted(found, key=_site_key)


def _run_group(cmd, cwd, env):
    """subprocess.run(CMD) in a process group of its own, so that an
    interruption also ends the spatch processes that make started."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            start_new_session=True)
    try:
        out, err = proc.communicate()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _site_key(line):
    m = REPORT_LINE.match(line)
    return (m.group("file"), int(m.group("line")), line)


def site(line):
    """'path:line' of a report line."""
    m = REPORT_LINE.match(line)
    return "%s:%s" % (m.group("file"), m.group("line"))


def _copy_tree(tree, scratch):
    proc = subprocess.run(["cp", "-al", tree, scratch], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError("cannot make a hard-linked scratch copy of %s in %s (%s); set TMPDIR "
                         "to a directory on the tree's file system"
                         % (tree, os.path.dirname(scratch),
                            (proc.stderr.strip().splitlines() or ["cp failed"])[-1]))


def _replace(root, rel, data):
    """Write REL under ROOT as a new file: never through a hard link."""
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".mmaudit-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------
# The messages

def _bullet(text):
    lines = message.wrap(text, BODY_WIDTH - 2).split("\n")
    return "\n".join(["- " + lines[0]] + ["  " + l for l in lines[1:]])


def _list(words):
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _prefix(tree, rel, default):
    """(subject prefix, capitalise) for REL from the tree's history, else DEFAULT."""
    return message.history_prefix(tree, rel) or (default, False)


def _subject(prefix, summary):
    prefix, capitalise = prefix
    first = summary.split(" ", 1)[0]
    if capitalise and re.fullmatch(r"[a-z]+", first):
        summary = summary[0].upper() + summary[1:]
    return "%s: %s" % (prefix, summary)


def _arch_sentence(archs):
    if not archs:
        return ("In this tree no architecture's TLB code reads mm_users to skip a flush, so "
                "what remains is the teardown.")
    return ("In this tree, the TLB code of %s reads mm_users to skip a flush or to keep it "
            "on the local CPU." % _list(archs))


def _trailer(author, cc, link=False):
    lines = (["Link: %s [1]" % THREAD] if link else []) + ["Signed-off-by: %s" % author]
    return "\n".join(lines + ["Cc: %s" % c for c in cc])


def message_1(author, archs, done, cc):
    failure = ("the TLB code of %s uses mm_users to skip a flush or to keep it on the local "
               "CPU, and mm_users does not count the kthread that has the mm loaded, so a "
               "flush can miss the CPU the kthread runs on;" % _list(archs) if archs else
               "an architecture whose TLB code used mm_users to skip a flush would miss the "
               "CPU the kthread runs on (none in this tree does);")
    paras = [
        message.wrap("kthread_use_mm() takes no mm_users reference: the mm_count reference "
                     "it takes keeps the mm_struct, not the address space.  A caller that "
                     "holds no mm_users reference across the borrow leaves two holes:"),
        _bullet(failure) + "\n" +
        _bullet("when the owner exits, mm_users drops to zero and __mmput() tears the "
                "address space down (exit_mmap()) while the kthread may still be using it."),
        message.wrap("Most callers take the reference with mmget_not_zero() or get_task_mm() "
                     "and drop it with mmput() after kthread_unuse_mm(), but the kernel-doc "
                     "of kthread_use_mm() does not say that they must.  When this came up "
                     "for use_mm(), taking the reference inside use_mm() was proposed; "
                     "Michal Hocko preferred that the callers take it, and only while they "
                     "use the mm, so that the lifetime of the address space is not bound to "
                     "a kernel thread [1]."),
        message.wrap("%s: which helpers take the reference, when to drop it, and why.%s" % (
            "Add a kernel-doc comment to kthread_use_mm() that states the requirement"
            if done["added"] else "State the requirement in the kernel-doc of kthread_use_mm()",
            "  Add a Context: section too." if done["context"] and not done["added"] else "")),
        _trailer(author, cc, link=True)]
    return "\n\n".join(paras)


GENERATED_LINE = re.compile(r"^// Generated from cocci/src/.* by scripts/gen-cocci: do not edit\n",
                            re.M)


def kernel_copy(rule_text):
    """The rule as the kernel gets it: without our line that says it is
    generated (its sources stay in this project)."""
    return GENERATED_LINE.sub("", rule_text, count=1)


def _modes(rule_text):
    modes = re.findall(r"^virtual\s+(patch|context|org|report)\s*$", rule_text, re.M)
    order = ["report", "context", "org", "patch"]
    return [m for m in order if m in modes]


def message_2(author, rule_text, entry, version, found, cc):
    modes = _modes(rule_text)
    paras = [message.wrap(
        "kthread_use_mm() takes no mm_users reference, so its caller must hold one across "
        "the borrow, as its kernel-doc says.  Add a rule that reports the calls where no "
        "mm_users reference is held on some path to the borrow: no mmget(), "
        "mmget_not_zero(), get_task_mm() or mm_alloc() before it in the function, and, "
        "for an mm loaded from a struct field, stores to that field in the same file that "
        "take only an mm_count reference (mmgrab()) or none.  It looks at one file at a "
        "time.")]
    if modes:
        paras.append(message.wrap("It has %s mode%s." % (_list(modes),
                                                         "s" if len(modes) > 1 else "")))
    if entry:
        paras.append(message.wrap("List the rule under %s in MAINTAINERS%s." % (
            entry[1], ", so that changes to it also reach %s" % entry[2] if entry[2] else "")))
    if found:
        paras.append("On Linux %s, make coccicheck MODE=report reports %d call site%s:\n\n%s"
                     % (version, len(found), "" if len(found) == 1 else "s",
                        "\n".join("  " + site(l) for l in found)))
    else:
        paras.append(message.wrap("On Linux %s, make coccicheck MODE=report reports no call "
                                  "site." % version))
    paras.append(_trailer(author, cc))
    return "\n\n".join(paras)


def cover_letter(version, archs, found, rule):
    paras = [
        message.wrap("kthread_use_mm() lets a kernel thread borrow a user address space.  It "
                     "takes no mm_users reference of its own, only an mm_count one, which "
                     "keeps the mm_struct but not the address space.  So its callers must "
                     "hold an mm_users reference across the borrow: most take one with "
                     "mmget_not_zero() or get_task_mm(), but nothing says that they must."),
        message.wrap("The requirement comes from the 2020 thread on use_mm() [1]: some "
                     "architectures skip remote TLB flushes when mm_users shows a single "
                     "user or a dying mm, and an mm that "
                     "is not pinned can be torn down under the borrower.  Rather than "
                     "use_mm() taking the reference, Michal Hocko preferred that the few "
                     "callers without it take it only while they use the mm; "
                     "kthread_use_mm() still takes none.  %s" % _arch_sentence(archs)),
        message.wrap("Patch 1 writes the requirement into the kernel-doc of kthread_use_mm(). "
                     " Patch 2 adds a coccinelle rule that reports the callers that hold no "
                     "mm_users reference across the borrow.  On Linux %s," % version),
        "  make coccicheck MODE=report COCCI=%s" % rule,
        ("reports %d call site%s:\n\n%s" % (len(found), "" if len(found) == 1 else "s",
                                             "\n".join(found)) if found else
         "reports no call site."),
        message.wrap("This series fixes none of them: the fixes go to their subsystems "
                     "separately."),
        "[1] %s" % THREAD]
    return "\n\n".join(paras)


# --------------------------------------------------------------------------
# git format-patch

def _author_parts(author):
    m = re.fullmatch(r"\s*(.*?)\s*<([^<>\s@]+@[^<>\s@]+)>\s*", author)
    if not m or not m.group(1):
        raise UsageError("%r: the author must be 'Name <email>'" % author)
    return m.group(1), m.group(2)


def _git_env(home, name, email, date):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    stamp = "@%d +0000" % int(date.timestamp())
    env.update(HOME=home, XDG_CONFIG_HOME=home, GIT_CONFIG_NOSYSTEM="1",
               GIT_CONFIG_GLOBAL=os.devnull, LC_ALL="C", TZ="UTC",
               GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_AUTHOR_DATE=stamp,
               GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email, GIT_COMMITTER_DATE=stamp)
    return env


def _git(repo, env, *args, data=None):
    proc = subprocess.run(["git"] + list(args), cwd=repo, env=env, input=data,
                          capture_output=True)
    if proc.returncode != 0:
        raise UsageError("git %s failed: %s" % (args[0], proc.stderr.decode(
            "utf-8", "replace").strip().replace("\n", " ")[:300]))
    return proc.stdout.decode("utf-8", "replace")


def format_patch(base, commits, author, cover_subject, cover_body):
    """{file name: text} of `git format-patch --cover-letter`: BASE is
    {path: bytes} before the series, COMMITS [(message, {path: bytes})]."""
    if not shutil.which("git"):
        raise UsageError("git is missing; install it with: apt-get install git")
    name, email = _author_parts(author)
    with tempfile.TemporaryDirectory(prefix="mmaudit-series-") as tmp:
        repo, home, out = (os.path.join(tmp, d) for d in ("repo", "home", "out"))
        os.mkdir(home)
        env = _git_env(home, name, email, message.patch_date())
        _git(tmp, env, "init", "-q", repo)
        for rel, data in base.items():
            _replace(repo, rel, data)
        _git(repo, env, "add", "-A", "-f")
        _git(repo, env, "commit", "-q", "--no-verify", "-m", "base")
        for text, files in commits:
            for rel, data in files.items():
                _replace(repo, rel, data)
            _git(repo, env, "add", "-A", "-f")
            _git(repo, env, "commit", "-q", "--no-verify", "--cleanup=whitespace", "-F", "-",
                 data=_encode(text))
        _git(repo, env, "format-patch", "-q", "--cover-letter", "--numbered", "--zero-commit",
             "--subject-prefix=PATCH", "--signature=mmaudit %s" % VERSION, "-o", out,
             "HEAD~%d" % len(commits))
        texts = {}
        for fname in sorted(os.listdir(out)):
            texts[fname] = _read(os.path.join(out, fname))
    cover = [n for n in texts if n.startswith("0000-")][0]
    texts[cover] = fill_cover(texts[cover], cover_subject, cover_body)
    return texts


def fold_subject(line, width=78):
    """A Subject: header folded at blanks as git format-patch folds it."""
    words, lines = line.split(" "), []
    current = words[0]
    for w in words[1:]:
        if len(current) + 1 + len(w) > width:
            lines.append(current)
            current = w
        else:
            current += " " + w
    return "\n ".join(lines + [current])


def fill_cover(text, subject, body):
    head, sep, rest = text.partition("\n\n")
    head = re.sub(r"^Subject: (\[[^\]]*\]) \*\*\* SUBJECT HERE \*\*\*$",
                  lambda m: fold_subject("Subject: %s %s" % (m.group(1), subject)), head,
                  flags=re.M)
    rest = rest.replace("*** BLURB HERE ***", body, 1)
    return head + sep + rest


# --------------------------------------------------------------------------
# The whole series

def series(tree, author, progress=lambda msg: None, jobs=2):
    """{file name: text} of the series against TREE (a directory), and
    the report lines of the rule on TREE."""
    kthread = kthread_source(tree)
    rule_file = rule_path()
    try:
        rule_text = kernel_copy(_read(rule_file))
    except OSError as err:
        raise UsageError("%s: cannot read the rule (%s)" % (rule_file, err.strerror or err))
    spatch.spatch_version()
    new_kthread, done = document(kthread)
    maint_path = os.path.join(tree, "MAINTAINERS")
    maint = _read(maint_path) if os.path.isfile(maint_path) else None
    entry = maintainers_entry(maint) if maint is not None else None
    second = {RULE: _encode(rule_text)}
    if entry:
        second["MAINTAINERS"] = _encode(entry[0])
    first = {KTHREAD: _encode(new_kthread)}
    base = {KTHREAD: _encode(kthread)}
    if entry:
        base["MAINTAINERS"] = _encode(maint)
    version = message_version(tree)
    archs = sorted(message.TreeLookups(tree).arch_shortcuts())
    with tempfile.TemporaryDirectory(prefix="mmaudit-upstream-") as tmp:
        scratch = os.path.join(tmp, "tree")
        progress("copying %s (hard links)" % tree)
        _copy_tree(tree, scratch)
        for rel, data in list(first.items()) + list(second.items()):
            _replace(scratch, rel, data)
        progress("make coccicheck MODE=report COCCI=%s" % RULE)
        found = coccicheck(scratch, RULE, jobs)
        cc1 = message.maintainers(scratch, [KTHREAD])
        cc2 = message.maintainers(scratch, sorted(second))
    subject1 = _subject(_prefix(tree, KTHREAD, "kthread"), SUMMARIES[0])
    subject2 = _subject(_prefix(tree, RULE, "coccinelle: api"), SUMMARIES[1])
    commits = [(subject1 + "\n\n" + message_1(author, archs, done, cc1), first),
               (subject2 + "\n\n" + message_2(author, rule_text, entry, version, found, cc2),
                second)]
    texts = format_patch(base, commits, author, COVER_SUBJECT,
                         cover_letter(version, archs, found, RULE))
    return texts, found


def message_version(tree):
    return kernel_version(tree) or os.path.basename(os.path.abspath(tree))
