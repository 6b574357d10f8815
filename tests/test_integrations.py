"""The git hook (scripts/mmaudit-hook) and the CI examples (examples/ci/),
run for real on a small git repository built from
tests/fixtures/integrations/: worker.c pins both of its borrows (one
through the store of the owning field, one locally), worker_unpinned.c is
the edit that drops the store's mmget() (job_run() becomes unreferenced,
and its lines move up by one), grabber.c adds a new grab-only borrow."""

import json
import os
import re
import subprocess

import yaml

import support

HOOK = os.path.join(support.ROOT, "scripts", "mmaudit-hook")
SARIF_VALIDATE = os.path.join(support.ROOT, "scripts", "sarif-validate")
CI = os.path.join(support.ROOT, "examples", "ci")
FIXTURES = os.path.join(support.ROOT, "tests", "fixtures", "integrations")

# The findings the bad edit brings: (rule, file, line).
LOST_PIN = ("MMA002", "worker.c", 18)     # job_run(): pinned -> unreferenced
NEW_GRAB = ("MMA001", "grabber.c", 19)    # grabber_run(): a new grab-only site


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def git_env(**extra):
    """The environment of a user's shell: nothing of the test's git, its
    own identity, no global or system configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "MMAUDIT"}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="Mmaudit Test", GIT_AUTHOR_EMAIL="mmaudit-test@example.org",
               GIT_COMMITTER_NAME="Mmaudit Test", GIT_COMMITTER_EMAIL="mmaudit-test@example.org")
    env.update(extra)
    return env


def run(cmd, cwd, env=None, stdin=None):
    return subprocess.run(cmd, cwd=str(cwd), env=env or git_env(), input=stdin,
                          capture_output=True, text=True)


def git(repo, *args, ok=True):
    proc = run(["git"] + list(args), repo)
    if ok:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def write(repo, name, fixture_name=None, text=None):
    with open(os.path.join(str(repo), name), "w") as f:
        f.write(fixture(fixture_name or name) if text is None else text)


def commit(repo, message):
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD").stdout.strip()


def new_repo(path):
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def clean_repo(tmp_path, name="linux"):
    """A repository whose one commit is the clean worker.c."""
    repo = new_repo(tmp_path / name)
    write(repo, "worker.c")
    commit(repo, "worker: pin every borrow")
    return repo


def install(repo, hook):
    os.symlink(HOOK, os.path.join(str(repo), ".git", "hooks", hook))


def head(repo, rev="HEAD"):
    return git(repo, "rev-parse", rev).stdout.strip()


# --- pre-commit -------------------------------------------------------------


def test_pre_commit_passes_the_clean_tree_and_refuses_the_lost_pin(tmp_path):
    repo = clean_repo(tmp_path)
    install(repo, "pre-commit")
    hook = run([".git/hooks/pre-commit"], repo)
    assert hook.returncode == 0, hook.stderr
    assert "refused" not in hook.stderr

    # The bad edit, made and then staged: the hook refuses both times.
    write(repo, "worker.c", "worker_unpinned.c")
    for step in ("made", "staged"):
        if step == "staged":
            git(repo, "add", "worker.c")
        hook = run([".git/hooks/pre-commit"], repo)
        assert hook.returncode == 1, (step, hook.stdout, hook.stderr)
        assert "worker.c:18" in hook.stderr and "unreferenced" in hook.stderr, hook.stderr
        assert "borrow_one" not in hook.stderr and "worker.c:32" not in hook.stderr, hook.stderr
        assert "commit refused" in hook.stderr and "git commit --no-verify" in hook.stderr

    before = head(repo)
    refused = git(repo, "commit", "-q", "-m", "worker: drop the pin", ok=False)
    assert refused.returncode != 0 and "commit refused" in refused.stderr, refused.stderr
    refused = git(repo, "commit", "-q", "-a", "-m", "worker: drop the pin", ok=False)
    assert refused.returncode != 0 and "commit refused" in refused.stderr, refused.stderr
    assert head(repo) == before
    assert git(repo, "diff", "--cached", "--name-only").stdout.split() == ["worker.c"]
    assert not os.path.exists(os.path.join(str(repo), ".git", "index.lock"))

    # Fixed (a comment more than the clean tree): the commit goes in.
    write(repo, "worker.c", text=fixture("worker.c") + "// reviewed\n")
    done = git(repo, "commit", "-q", "-a", "-m", "worker: a comment", ok=False)
    assert done.returncode == 0, done.stderr
    assert head(repo) != before


def test_pre_commit_no_verify_bypasses_it(tmp_path):
    repo = clean_repo(tmp_path)
    install(repo, "pre-commit")
    write(repo, "worker.c", "worker_unpinned.c")
    done = git(repo, "commit", "-q", "-a", "--no-verify", "-m", "worker: drop the pin", ok=False)
    assert done.returncode == 0, done.stderr


def test_pre_commit_allows_the_first_commit_with_a_note(tmp_path):
    repo = new_repo(tmp_path / "fresh")
    install(repo, "pre-commit")
    write(repo, "worker.c", "worker_unpinned.c")
    git(repo, "add", "worker.c")
    done = git(repo, "commit", "-q", "-m", "first", ok=False)
    assert done.returncode == 0, done.stderr
    assert "first commit" in done.stderr and "not audited" in done.stderr, done.stderr


def wrapper(tmp_path, body):
    """An MMAUDIT that logs its arguments, then runs the real mmaudit (BODY
    may change the arguments first)."""
    path = tmp_path / "mmaudit-wrapper"
    log = tmp_path / "mmaudit-args"
    path.write_text('#!/bin/sh\necho "$@" >> "%s"\n%s\nexec /usr/bin/python3 "%s" "$@"\n'
                    % (log, body, support.MMAUDIT))
    path.chmod(0o755)
    return str(path), log


def test_pre_commit_by_argument_from_a_subdirectory_with_MMAUDIT(tmp_path):
    repo = clean_repo(tmp_path)
    sub = repo / "drivers"
    sub.mkdir()
    mmaudit, log = wrapper(tmp_path, "")
    write(repo, "worker.c", "worker_unpinned.c")
    hook = run([HOOK, "pre-commit"], sub, env=git_env(MMAUDIT=mmaudit))
    assert hook.returncode == 1, hook.stderr
    assert "commit refused" in hook.stderr
    assert log.read_text().split() == ["audit", "--base", "HEAD", "-q", "--no-risk",
                                       os.path.realpath(str(repo))]


def test_hook_fails_closed_on_an_mmaudit_error(tmp_path):
    repo = clean_repo(tmp_path)
    install(repo, "pre-commit")
    # The real mmaudit, asked about a revision that does not exist: exit 2.
    mmaudit, _ = wrapper(tmp_path, 'shift 3; set -- audit --base no-such-revision "$@"')
    hook = run([".git/hooks/pre-commit"], repo, env=git_env(MMAUDIT=mmaudit))
    assert hook.returncode == 2, hook.stderr
    assert "mmaudit: error:" in hook.stderr, hook.stderr
    assert "commit refused: mmaudit failed (exit 2)" in hook.stderr
    missing = run([".git/hooks/pre-commit"], repo,
                  env=git_env(MMAUDIT=str(tmp_path / "no-such-mmaudit")))
    assert missing.returncode == 2 and "cannot run mmaudit" in missing.stderr, missing.stderr
    usage = run([HOOK, "post-merge"], repo)
    assert usage.returncode == 2 and "usage" in usage.stderr


# --- pre-push ---------------------------------------------------------------


def pushed_repo(tmp_path):
    """The clean repository with a bare remote that has its main branch
    (pushed before the hook was installed), and the pre-push hook."""
    repo = clean_repo(tmp_path)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "-u", "origin", "main")
    install(repo, "pre-push")
    return repo, remote


def test_pre_push_refuses_a_commit_that_loses_a_pin(tmp_path):
    repo, remote = pushed_repo(tmp_path)
    good = head(repo)
    write(repo, "worker.c", "worker_unpinned.c")
    commit(repo, "worker: drop the pin")
    refused = git(repo, "push", "-q", "origin", "main", ok=False)
    assert refused.returncode != 0, refused.stderr
    assert "worker.c:18" in refused.stderr and "unreferenced" in refused.stderr, refused.stderr
    assert "push refused" in refused.stderr and "git push --no-verify" in refused.stderr
    assert head(remote, "main") == good

    write(repo, "worker.c", text=fixture("worker.c") + "// pinned again\n")
    commit(repo, "worker: pin it again")
    done = git(repo, "push", "-q", "origin", "main", ok=False)
    assert done.returncode == 0, done.stderr
    assert head(remote, "main") == head(repo)


def test_pre_push_new_branch_against_its_upstream_merge_base(tmp_path):
    repo, remote = pushed_repo(tmp_path)
    # A new branch without an upstream: pushed, with a note.
    git(repo, "checkout", "-q", "-b", "loose")
    write(repo, "grabber.c")
    commit(repo, "grabber")
    loose = git(repo, "push", "-q", "origin", "loose", ok=False)
    assert loose.returncode == 0, loose.stderr
    assert "new branch without an upstream, not audited" in loose.stderr
    # A new branch that tracks origin/main: audited from the merge base.
    git(repo, "checkout", "-q", "-b", "feature", "--track", "origin/main")
    write(repo, "grabber.c")
    commit(repo, "grabber")
    refused = git(repo, "push", "-q", "origin", "feature", ok=False)
    assert refused.returncode != 0, refused.stderr
    assert "grabber.c:19" in refused.stderr and "grab-only" in refused.stderr, refused.stderr
    assert "feature" not in git(remote, "branch").stdout
    # A delete is not audited.
    gone = git(repo, "push", "-q", "origin", "--delete", "loose", ok=False)
    assert gone.returncode == 0, gone.stderr
    assert "loose" not in git(remote, "branch").stdout


def test_pre_push_audits_the_pushed_commit_not_the_work_tree(tmp_path):
    repo, remote = pushed_repo(tmp_path)
    # A bad branch that is not checked out is refused ...
    git(repo, "branch", "feature", "--track", "origin/main")
    git(repo, "checkout", "-q", "feature")
    write(repo, "worker.c", "worker_unpinned.c")
    commit(repo, "worker: drop the pin")
    git(repo, "checkout", "-q", "main")
    refused = git(repo, "push", "-q", "origin", "feature", ok=False)
    assert refused.returncode != 0 and "worker.c:18" in refused.stderr, refused.stderr
    # ... a good commit pushed from a work tree with a bad edit in it goes
    write(repo, "worker.c", text=fixture("worker.c") + "// reviewed\n")
    commit(repo, "worker: a comment")
    write(repo, "worker.c", "worker_unpinned.c")
    done = git(repo, "push", "-q", "origin", "main", ok=False)
    assert done.returncode == 0, done.stderr
    assert head(remote, "main") == head(repo)
    # ... and no scratch work tree is left behind.
    assert len(git(repo, "worktree", "list").stdout.splitlines()) == 1
    assert git(repo, "status", "--porcelain").stdout.split() == ["M", "worker.c"]


# --- mmaudit check ------------------------------------------------------------


def test_check_a_patch_series(tmp_path):
    repo = clean_repo(tmp_path)
    git(repo, "checkout", "-q", "-b", "series")
    write(repo, "worker.c", text=fixture("worker.c") + "// reviewed\n")
    commit(repo, "worker: a comment")
    write(repo, "worker.c", text=fixture("worker_unpinned.c") + "// reviewed\n")
    write(repo, "grabber.c")
    commit(repo, "worker: drop the pin, add a grabber")
    out = tmp_path / "series"
    git(repo, "format-patch", "-q", "-o", str(out), "main")
    git(repo, "checkout", "-q", "main")
    patches = sorted(str(p) for p in out.iterdir())
    assert len(patches) == 2
    first = support.run_mmaudit("check", "-q", patches[0], "--tree", str(repo))
    assert first.returncode == 0, (first.stdout, first.stderr)
    both = support.run_mmaudit("check", "-q", *patches, "--tree", str(repo))
    assert both.returncode == 1, (both.stdout, both.stderr)
    assert "worker.c:18" in both.stdout and "grabber.c:19" in both.stdout, both.stdout
    assert "borrow_one" not in both.stdout
    assert git(repo, "status", "--porcelain").stdout == ""      # the tree is not touched


# --- the CI examples ----------------------------------------------------------


def load(name):
    with open(os.path.join(CI, name)) as f:
        return yaml.safe_load(f)


def pull_request(tmp_path, bad=True):
    """What a CI runner checks out for a pull request: a clone of the
    project (origin/main the clean tree) at the request's head, which
    loses worker.c's pin and adds grabber.c, or (BAD false) adds a comment."""
    upstream = clean_repo(tmp_path, "upstream")
    contributor = tmp_path / "contributor"
    git(tmp_path, "clone", "-q", str(upstream), str(contributor))
    if bad:
        write(contributor, "worker.c", "worker_unpinned.c")
        write(contributor, "grabber.c")
    else:
        write(contributor, "worker.c", text=fixture("worker.c") + "// reviewed\n")
    commit(contributor, "the pull request")
    git(upstream, "fetch", "-q", str(contributor), "main:refs/pull/1/head")
    work = tmp_path / "workspace"
    git(tmp_path, "clone", "-q", str(upstream), str(work))
    git(work, "fetch", "-q", "origin", "refs/pull/1/head")
    git(work, "checkout", "-q", "--detach", "FETCH_HEAD")
    return work


def sarif_results(path):
    check = subprocess.run([SARIF_VALIDATE, str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with open(str(path)) as f:
        log = json.load(f)
    assert log["version"] == "2.1.0"
    return sorted((r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                   r["locations"][0]["physicalLocation"]["region"]["startLine"])
                  for r in log["runs"][0]["results"])


def github_steps():
    wf = load("github-actions.yml")
    steps = wf["jobs"]["mmaudit"]["steps"]
    by_id = {s["id"]: s for s in steps if "id" in s}
    return wf, steps, by_id


def test_github_workflow_structure():
    wf, steps, by_id = github_steps()
    assert "pull_request" in wf.get("on", wf.get(True))        # YAML 1.1 reads `on` as true
    job = wf["jobs"]["mmaudit"]
    assert job["permissions"]["security-events"] == "write"
    checkout = steps[0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    assert any("apt-get install" in s.get("run", "") and "coccinelle" in s.get("run", "")
               for s in steps)
    audit = by_id["audit"]
    assert "--base \"$BASE\"" in audit["run"] and "--format sarif" in audit["run"]
    assert "> mmaudit.sarif" in audit["run"] and "--no-risk" not in audit["run"]
    assert audit["env"]["BASE"] == "origin/${{ github.base_ref }}"
    for s in steps:     # no expression expanded into a script
        assert "${{" not in s.get("run", ""), s["name"]
    names = [s["name"] for s in steps]
    upload = [s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@")]
    assert len(upload) == 1 and upload[0]["with"]["sarif_file"] == "mmaudit.sarif"
    assert "if" not in upload[0]    # runs whenever the audit step passed: exit 0 or 1
    fail = steps[-1]
    assert names.index(audit["name"]) < names.index(upload[0]["name"]) < names.index(fail["name"])
    assert re.fullmatch(r"steps\.audit\.outputs\.status == '1'", fail["if"])
    assert "exit 1" in fail["run"]


def github_run(step, work, env):
    """A run step as the runner runs it (bash -eo pipefail), the step's env
    with the base ref of the pull request."""
    env = dict(env)
    for k, v in step.get("env", {}).items():
        env[k] = v.replace("${{ github.base_ref }}", "main")
    assert "${{" not in "".join(env.values())
    script = work.parent / "step.sh"
    script.write_text(step["run"])
    return run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], work, env=env)


def github_job(tmp_path, bad):
    work = pull_request(tmp_path, bad)
    _, steps, by_id = github_steps()
    runner = tmp_path / "runner"
    runner.mkdir()
    outputs, summary = runner / "output", runner / "summary"
    env = git_env(MMAUDIT=support.MMAUDIT, RUNNER_TEMP=str(runner), GITHUB_OUTPUT=str(outputs),
                  GITHUB_STEP_SUMMARY=str(summary), GITHUB_WORKSPACE=str(work))
    audit = github_run(by_id["audit"], work, env)
    assert audit.returncode == 0, (audit.stdout, audit.stderr)      # the upload step runs
    status = dict(line.split("=", 1) for line in outputs.read_text().splitlines())["status"]
    fail = steps[-1]
    failed = None
    if status == re.fullmatch(r"steps\.audit\.outputs\.status == '(.*)'", fail["if"]).group(1):
        failed = github_run(fail, work, env)
    return work, status, summary, failed


def test_github_workflow_fails_a_pull_request_that_loses_a_pin(tmp_path):
    work, status, summary, failed = github_job(tmp_path, bad=True)
    assert status == "1"
    assert sarif_results(work / "mmaudit.sarif") == sorted([LOST_PIN, NEW_GRAB])
    assert "grabber.c" in summary.read_text()
    assert failed is not None and failed.returncode == 1 and "mmaudit:" in failed.stderr


def test_github_workflow_passes_a_clean_pull_request(tmp_path):
    work, status, summary, failed = github_job(tmp_path, bad=False)
    assert status == "0" and failed is None
    assert sarif_results(work / "mmaudit.sarif") == []


def test_github_workflow_fails_on_an_audit_error(tmp_path):
    work = pull_request(tmp_path, bad=True)
    _, _, by_id = github_steps()
    step = dict(by_id["audit"], env={"BASE": "origin/no-such-branch"})
    outputs = tmp_path / "output"
    proc = github_run(step, work, git_env(MMAUDIT=support.MMAUDIT, RUNNER_TEMP=str(tmp_path),
                                          GITHUB_OUTPUT=str(outputs),
                                          GITHUB_STEP_SUMMARY=str(tmp_path / "summary")))
    assert proc.returncode != 0 and "mmaudit: error:" in proc.stderr, proc.stderr
    assert outputs.read_text().strip() == "status=2"


def test_gitlab_job_structure():
    job = load("gitlab-ci.yml")["mmaudit"]
    assert any("merge_request_event" in r["if"] for r in job["rules"])
    assert str(job["variables"]["GIT_DEPTH"]) == "0"
    assert any("coccinelle" in line for line in job["before_script"])
    script = "\n".join(job["script"])
    assert '--base "$CI_MERGE_REQUEST_DIFF_BASE_SHA"' in script and "--format sarif" in script
    assert "> mmaudit.sarif" in script and "--no-risk" not in script
    assert job["artifacts"]["when"] == "always" and "mmaudit.sarif" in job["artifacts"]["paths"]


def gitlab_job(tmp_path, bad):
    work = pull_request(tmp_path, bad)
    job = load("gitlab-ci.yml")["mmaudit"]
    base = git(work, "merge-base", "origin/main", "HEAD").stdout.strip()
    env = dict(job["variables"])
    env.update(git_env(MMAUDIT=support.MMAUDIT, CI_MERGE_REQUEST_DIFF_BASE_SHA=base,
                       CI_PROJECT_DIR=str(work), CI_PIPELINE_SOURCE="merge_request_event"))
    script = tmp_path / "script.sh"
    script.write_text("\n".join(job["script"]) + "\n")
    proc = run(["bash", "-eo", "pipefail", str(script)], work, env=env)
    for path in job["artifacts"]["paths"]:
        assert os.path.exists(os.path.join(str(work), path)), path
    return work, proc


def test_gitlab_job_fails_a_merge_request_that_loses_a_pin(tmp_path):
    work, proc = gitlab_job(tmp_path, bad=True)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "mmaudit-report/CHANGES.md" in proc.stderr
    assert sarif_results(work / "mmaudit.sarif") == sorted([LOST_PIN, NEW_GRAB])
    assert sarif_results(work / "mmaudit-report" / "changes.sarif") == sorted([LOST_PIN, NEW_GRAB])


def test_gitlab_job_passes_a_clean_merge_request(tmp_path):
    work, proc = gitlab_job(tmp_path, bad=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert sarif_results(work / "mmaudit.sarif") == []
