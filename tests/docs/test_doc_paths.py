"""Every repository path a doc names exists: README.md and docs/**/*.md, in backticks or links;
and every path, document and `python -m` module the code names (docstrings, comments, --help).

Why: a doc that points at a file that was moved, renamed or never committed (a planning note on
someone's machine) sends the reader nowhere. What counts as a path (pragmatic, see `candidates`):
- a token with a slash whose first part is a top-level folder or file of the repository
  (`learner/train.py`, `configs/x.toml`, `docs/hil.md`), or a link target (`(task_contract.md)`),
  resolved from the repository root or the doc's folder;
- a bare file name of a source or doc type (`recorder.py`, `protocol.md`): some committed file has
  that name;
- the module of a command (`python -m firmware_bridge.hil ...`): its file exists. Other
  dotted names of a package (`protocol.recording.Reader`) count when a module prefix of two or
  more parts exists; otherwise they may be config keys (`learner.plaintext`) and are not judged.
Skipped: run outputs and other generated places (runs/, data/, keys/, ...), URLs, placeholders
(`<date>`, `*`, `{a,b}`, `...`).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("learner", "onboard", "protocol", "firmware_bridge", "sim_models", "task_contract")
SOURCE_TYPES = (".py", ".md")  # bare config names (`file.toml`) are the reader's own files
GENERATED = ("runs/", "data/", "keys/", "out/", "tmp/", "/tmp", "learner/policies/", "results/runs/",
             "~", "spool/", "store/", "checkpoints/", "firmware_bridge/c/build/")
EXCLUDED_DOCS: tuple[str, ...] = ()
BACKTICK = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
TOKEN = re.compile(r"^[A-Za-z0-9_.\-/]+$")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


TRACKED = tracked_files()
TOP_LEVEL = {p.split("/", 1)[0] for p in TRACKED}
BASENAMES = {p.rsplit("/", 1)[-1] for p in TRACKED}


def doc_files() -> list[str]:
    return sorted(p for p in TRACKED if (p == "README.md" or (p.startswith("docs/") and p.endswith(".md")))
                  and p not in EXCLUDED_DOCS)


def candidates(text: str) -> list[tuple[str, str]]:
    """(kind, token) of everything in backticks or links that names a repository path."""
    found: list[tuple[str, str]] = [("link", m.group(1)) for m in LINK.finditer(text)]
    for span in BACKTICK.findall(text):
        words = span.split()
        for i, raw in enumerate(words):
            token = raw.strip("\"',;:()[]").rstrip(".")
            if TOKEN.match(token) and "..." not in token:
                found.append(("module" if i and words[i - 1] == "-m" else "code", token))
    return found


def exists(kind: str, token: str, doc: Path) -> bool | None:
    """True/False for a path we check, None for a token that is not a repository path."""
    if "://" in token or token.startswith(("mailto:", "#")) or any(token.startswith(g) or f"/{g}" in token for g in GENERATED):
        return None
    if kind == "link" or "/" in token:
        if kind != "link" and token.split("/", 1)[0] not in TOP_LEVEL:
            return None  # a slash in a value, a device, an option: not a repository path
        token = token.rstrip("/")
        return (REPO / token).exists() or (doc.parent / token).exists()
    if token.endswith(SOURCE_TYPES):
        return token in BASENAMES
    parts = token.split(".")
    if parts[0] not in PACKAGES or len(parts) < 2 or not all(p.isidentifier() for p in parts):
        return None
    module = REPO.joinpath(*parts)
    if kind == "module":
        return module.with_suffix(".py").exists() or (module / "__main__.py").exists()
    prefixes = (REPO.joinpath(*parts[:n]) for n in range(2, len(parts) + 1))
    return True if any(p.with_suffix(".py").exists() or (p / "__init__.py").exists() for p in prefixes) else None


@pytest.mark.parametrize("doc", doc_files())
def test_every_path_a_doc_names_exists(doc: str) -> None:
    path = REPO / doc
    missing = sorted({token for kind, token in candidates(path.read_text(encoding="utf-8"))
                      if exists(kind, token, path) is False})
    assert not missing, f"{doc} names paths that are not in the repository: {missing}"


def test_the_checker_sees_real_and_missing_paths() -> None:
    """The rules on known cases, so a loosened rule cannot make the doc test pass vacuously."""
    doc = REPO / "docs" / "x.md"
    text = ("See `learner/train.py`, [hil](hil.md), `python -m firmware_bridge.hil recover a.mcap b.mcap`, "
            "`protocol.recording.Reader`, `PLANNING.md`, `learner/nope.py`, `runs/demo-<date>/report.md`, "
            "`--link.url /dev/ttyUSB0`, [gone](gone.md), `python -m sim_models.no_such_module`, `learner.plaintext`")
    verdicts = {token: exists(kind, token, doc) for kind, token in candidates(text)}
    assert verdicts["learner/train.py"] and verdicts["hil.md"] and verdicts["firmware_bridge.hil"]
    assert verdicts["protocol.recording.Reader"]
    assert verdicts["PLANNING.md"] is False and verdicts["learner/nope.py"] is False and verdicts["gone.md"] is False
    assert verdicts["sim_models.no_such_module"] is False and verdicts["learner.plaintext"] is None
    assert verdicts["a.mcap"] is None and verdicts["/dev/ttyUSB0"] is None
    assert "runs/demo-<date>/report.md" not in verdicts or verdicts["runs/demo-<date>/report.md"] is None


def test_the_readme_layout_table_names_every_top_level_folder() -> None:
    """README "Layout" has a row for every committed top-level folder (hidden ones aside)."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = {m.group(1) for m in re.finditer(r"^\| `([^`/]+)/`", section, re.M)}
    folders = {p.split("/", 1)[0] for p in TRACKED if "/" in p and not p.startswith(".")}
    assert folders <= listed, f"top-level folders missing from README's layout table: {sorted(folders - listed)}"
    assert listed <= folders, f"README's layout table lists folders that are not committed: {sorted(listed - folders)}"


# ------------------------------------------------------------------------------ docstrings
# Code names paths too: in docstrings, comments, --help texts and error messages. There a path
# is any word that starts with a top-level folder of the repository, a *.md file name, or the
# module of a `python -m` command line. Skipped besides the generated places: placeholders
# (`<grid>`, `{p}`, `*`) and files the programs write (a run folder's `learner/metrics.jsonl`).
CODE_DIRS = (*PACKAGES, "benchmarks", "devkit", "scripts")
OUTPUT_TYPES = (".json", ".jsonl", ".csv", ".png", ".gif", ".mp4", ".onnx", ".pt", ".mcap", ".hdf5", ".log")
OUTPUT_DOCS = {"report.md"}  # the demo's report, written into its run folder
CODE_PATH = re.compile(r"(?<![\w./-])((?:%s)/[A-Za-z0-9_./<>*{}-]*[A-Za-z0-9_>}*])"
                       % "|".join(re.escape(t) for t in sorted(TOP_LEVEL) if "." not in t))
CODE_DOC = re.compile(r"(?<![\w/.-])([A-Za-z0-9_]+\.md)\b")
CODE_MODULE = re.compile(r"python3? -m ([A-Za-z_][\w.]*[A-Za-z0-9_])")
# A path out of the checkout ("../<folder>/") or into another machine's home or work folders.
# (The roots are joined at run time so that this file names no such path itself.)
_FOREIGN_ROOTS = ("home/(?!robot/)", "Users/", "work/")
OTHER_MACHINES = re.compile(r"(?<![\w.])(%s|\.\./[A-Za-z_]\w*)" % "|".join("/" + r + r"\w+" for r in _FOREIGN_ROOTS))


def code_files() -> list[str]:
    return sorted(p for p in TRACKED if p.endswith((".py", ".sh")) and p.split("/", 1)[0] in CODE_DIRS)


def missing_in_code(text: str, where: Path) -> list[str]:
    missing: set[str] = set()
    for m in CODE_PATH.finditer(text):
        token = m.group(1)
        if any(c in token for c in "<>{}*") or token.endswith(OUTPUT_TYPES) or token.startswith("results/grid"):
            continue
        if exists("code", token, where) is False:
            missing.add(token)
    missing |= {m.group(1) for m in CODE_DOC.finditer(text)
                if m.group(1) not in BASENAMES and m.group(1) not in OUTPUT_DOCS}
    missing |= {m.group(1) for m in CODE_MODULE.finditer(text) if exists("module", m.group(1), where) is False}
    missing |= {m.group(1) for m in OTHER_MACHINES.finditer(text)}
    return sorted(missing)


@pytest.mark.parametrize("path", code_files())
def test_every_path_the_code_names_exists(path: str) -> None:
    missing = missing_in_code((REPO / path).read_text(encoding="utf-8"), REPO / path)
    assert not missing, f"{path} names paths or documents that are not in the repository: {missing}"


def test_the_code_checker_sees_real_and_missing_paths() -> None:
    where = REPO / "learner" / "x.py"
    text = ('"""See docs/service.md and learner/train.py (PLAN.md, NOTES.md, ../elsewhere/notes.md, '
            '/home/alice/h2o/README.md); run `python -m learner.nope --x` or python -m learner.train; '
            'writes learner/metrics.jsonl and configs/experiments/<grid>.toml; learner/gone.py."""')
    assert missing_in_code(text, where) == sorted(["PLAN.md", "NOTES.md", "../elsewhere", "/home/alice",
                                                   "learner.nope", "learner/gone.py"])
