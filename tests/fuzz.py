"""Random hostile input for every command of mmaudit.

Each case builds input in a sandbox, runs the command, and checks that it
exited 0, 1 or 2 with no traceback, and that nothing outside the output
directory and the cache changed (the sandbox and the checkout are listed
with sizes and modification times before and after).

    python3 tests/fuzz.py [SECONDS] [SEED]      # as `make fuzz` runs it
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import support  # noqa: E402

GRAB_ONLY = os.path.join(support.AUDIT_FIXTURES, "field_grab_only_in_other_file")
NAME_BYTES = [b"a", b"b", b".", b"-", b" ", b"\t", b"\n", b"\xff", b"\xc3\xa9", b"|", b"`",
              b"<", b">", b"\x1b[31m", b"%", b"'", b'"', b"\\", b"$(", b"*", b"..", b"~"]
C_SNIPPETS = [b"kthread_use_mm(x->mm);", b"use_mm(mm);", b"'\"'", b'"kthread_use_mm("',
              b"/* kthread_use_mm(x->mm); */", b"// \\\n kthread_use_mm(y);", b"#if 0\n",
              b"#endif\n", b"mmget_not_zero(x->mm)", b"mmput(x->mm);", b"x->mm = current->mm;",
              b"{", b"}", b"(", b")", b"#define M(x) kthread_use_mm(x)\n", b"\\\n", b"\x00",
              b"struct c { struct mm_struct *mm; };", b"void f(struct c *x)", b"\n"]


def listing(*roots, skip=()):
    """{path: (size, mtime_ns, mode)} of everything under ROOTS but SKIP."""
    seen = {}
    for root in roots:
        for top, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
            for name in dirs + files:
                path = os.path.join(top, name)
                if path in skip:
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                # A directory's own times change with its entries, which are listed.
                seen[path] = (st.st_mode,) if os.path.isdir(path) and not os.path.islink(path) \
                    else (st.st_size, st.st_mtime_ns, st.st_mode)
    return seen


def random_name(rng):
    name = b"".join(rng.choice(NAME_BYTES) for _ in range(rng.randint(1, 6)))
    name = name.replace(b"/", b"_").replace(b"\0", b"_")
    if name in (b".", b".."):
        name += b"x"
    return name + rng.choice([b".c", b".h", b".c", b""])


def random_c(rng):
    return b" ".join(rng.choice(C_SNIPPETS) for _ in range(rng.randint(0, 25)))


def random_tree(rng, root):
    os.makedirs(root)
    for _ in range(rng.randint(1, 5)):
        path = os.path.join(os.fsencode(root), random_name(rng))
        try:
            with open(path, "wb") as f:
                f.write(random_c(rng) if rng.random() < 0.8 else rng.randbytes(rng.randint(0, 300)))
        except OSError:
            pass
    return root


def mutate(rng, data):
    """Random damage to bytes: a truncation, flipped bytes or a splice."""
    choice = rng.randrange(4)
    if choice == 0 and data:
        return data[:rng.randrange(len(data))]
    if choice == 1 and data:
        data = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice == 2:
        return rng.randbytes(rng.randint(0, 200))
    try:
        doc = json.loads(data)
    except ValueError:
        return data + b"}"
    return json.dumps(_damage_json(rng, doc)).encode()


def _damage_json(rng, doc):
    """Replace one random value deep inside DOC by another type."""
    if isinstance(doc, dict) and doc:
        key = rng.choice(sorted(doc))
        if rng.random() < 0.3:
            del doc[key]
        else:
            doc[key] = _damage_json(rng, doc[key])
        return doc
    if isinstance(doc, list) and doc:
        i = rng.randrange(len(doc))
        doc[i] = _damage_json(rng, doc[i])
        return doc
    return rng.choice([None, "", "x", -1, 0, 10 ** 30, 1.5, [], {}, True])


class Sandbox:
    def __init__(self, rng, base):
        self.rng = rng
        self.base = base
        self.env = dict(os.environ, XDG_CACHE_HOME=os.path.join(base, "cache"))
        self.seeds = {}

    def seed(self):
        """Real outputs to damage: a findings.json, two shards, cache entries.
        Seeds that are not real outputs would leave merge, diff and the
        cache with nothing but noise to reject: they stop the run."""
        tree = os.path.join(self.base, "seed-tree")
        shutil.copytree(GRAB_ONLY, tree)
        for name, extra in (("findings", []), ("shard1", ["--shard", "1/2"]),
                            ("shard2", ["--shard", "2/2"])):
            proc = subprocess.run([sys.executable, support.MMAUDIT, "audit", "-q", "--format",
                                   "json"] + extra + [tree], capture_output=True, env=self.env)
            if proc.returncode not in (0, 1) or "schema" not in json.loads(proc.stdout or "{}"):
                raise RuntimeError("fuzz seed %s: exit %d: %s"
                                   % (name, proc.returncode, proc.stderr.decode()[-500:]))
            self.seeds[name] = proc.stdout
        if json.loads(self.seeds["findings"])["summary"]["sites"] != 1 \
                or not os.listdir(os.path.join(self.env["XDG_CACHE_HOME"], "mmaudit", "facts")):
            raise RuntimeError("fuzz seed: no site, or no fact cache, to damage")
        self.tree = tree
        # A real patch of the seed tree (the fix of its grab-only store), for `check`.
        self.seeds["patch"] = (
            b"--- a/create.c\n+++ b/create.c\n@@ -5,6 +5,5 @@\n \n"
            b" void ctx_create(struct ctx *c)\n {\n-\tmmgrab(current->mm);\n"
            b"-\tc->mm = current->mm;\n+\tc->mm = get_task_mm(current);\n }\n")

    def case(self, n):
        """One random command: (argv, output directory or None)."""
        rng = self.rng
        work = os.path.join(self.base, "case%d" % n)
        os.makedirs(work)
        out = os.path.join(work, "out")
        kind = rng.choice(["audit", "audit", "merge", "diff", "cache", "check"])
        if kind == "check":
            path = os.path.join(work, "series.patch")
            data = self.seeds["patch"]
            with open(path, "wb") as f:
                f.write(mutate(rng, data) if rng.random() < 0.7 else data)
            return ["check", path, "--tree", self.tree, "-q", "--no-risk", "-o", out], out
        if kind == "audit":
            tree = random_tree(rng, os.path.join(work, "tree"))
            return ["audit", "-q", "-j", str(rng.choice([1, 2])), "--timeout", "20",
                    "-o", out, tree], out
        if kind == "merge":
            paths = []
            for i in (1, 2):
                path = os.path.join(work, "s%d.json" % i)
                data = self.seeds["shard%d" % i]
                with open(path, "wb") as f:
                    f.write(mutate(rng, data) if rng.random() < 0.7 else data)
                paths.append(path)
            return ["merge", "-q", "-o", out] + paths, out
        if kind == "diff":
            paths = []
            for i in (1, 2):
                path = os.path.join(work, "f%d.json" % i)
                data = self.seeds["findings"]
                with open(path, "wb") as f:
                    f.write(mutate(rng, data) if rng.random() < 0.7 else data)
                paths.append(path)
            os.makedirs(out)
            return ["diff"] + paths + ["-o", os.path.join(out, "diff.md")], out
        # Damage the fact cache, then audit the tree it was made from.
        root = os.path.join(self.env["XDG_CACHE_HOME"], "mmaudit", "facts")
        entries = sorted(os.path.join(t, f) for t, _, fs in os.walk(root) for f in fs)
        for path in rng.sample(entries, min(len(entries), rng.randint(1, 3))):
            with open(path, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(mutate(rng, data))
        return ["audit", "-q", "--format", "json", "-o", out, self.tree], out


def check(sandbox, argv, out, timeout=120):
    """Run ARGV; return a problem, or None."""
    skip = {out, sandbox.env["XDG_CACHE_HOME"]}
    before = listing(sandbox.base, support.ROOT, skip=skip)
    try:
        proc = subprocess.run([sys.executable, support.MMAUDIT] + argv, capture_output=True,
                              env=sandbox.env, cwd=sandbox.base, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timed out after %d s" % timeout
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode not in (0, 1, 2):
        return "exit %d: %s" % (proc.returncode, err[-500:])
    if "Traceback" in err or "internal error" in err:
        return "traceback: %s" % err[-800:]
    if proc.returncode == 2 and len(err.strip().splitlines()) != 1:
        return "exit 2 without one line: %r" % err
    after = listing(sandbox.base, support.ROOT, skip=skip)
    changed = sorted(p for p in set(before) | set(after)
                     if before.get(p) != after.get(p) and not p.startswith(os.path.join(
                         support.ROOT, "tests", "__pycache__")))
    if changed:
        return "changed outside the output: %s" % changed[:5]
    return None


def run(seconds, seed, base=None):
    """Fuzz for SECONDS; returns (cases run, [(argv, problem)])."""
    rng = random.Random(seed)
    own = base is None
    base = base or tempfile.mkdtemp(prefix="mmaudit-fuzz-")
    sandbox = Sandbox(rng, base)
    sandbox.seed()
    problems, n = [], 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            argv, out = sandbox.case(n)
            problem = check(sandbox, argv, out)
            if problem:
                problems.append((argv, problem))
            n += 1
    finally:
        if own:
            shutil.rmtree(base, ignore_errors=True)
    return n, problems


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 600
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else int(time.time())
    cases, found = run(secs, seed)
    for argv, problem in found:
        print("FAIL %r: %s" % (argv, problem))
    print("fuzz: seed %d, %d cases in %.0f s, %d problems" % (seed, cases, secs, len(found)))
    sys.exit(1 if found else 0)
