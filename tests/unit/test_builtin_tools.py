"""The built-in tools (Read, Write, Edit, Glob, Grep, Skill) on real files, and their confinement.

Bash, which spawns processes, is covered by ``tests/integration/test_bash_tool.py``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from engine.phase import ToolOutcome
from engine.tools.builtin import BUILTIN_TOOL_SPECS, BuiltinToolBox, bash_environment
from engine.tools.builtin._workspace import Workspace

SEVEN = ["Read", "Write", "Edit", "Glob", "Grep", "Bash", "Skill"]

SKILL_MD = """\
---
name: release-notes
description: >
  Write release notes
  from merged pull requests.
---
# Release notes

1. Collect the merged PRs.
"""


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the job's, holding a file no tool may touch."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("TOP SECRET\n")
    return directory


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A job's working directory: a small checkout and an overlay with one skill."""
    root = tmp_path / "job"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text(
        "def main():\n    return 1\n\n\ndef helper():\n    return 1\n"
    )
    (root / "README.md").write_text("# Demo\n")
    skill = root / "_intelligence" / ".claude" / "skills" / "notes"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(SKILL_MD)
    (skill / "template.md").write_text("## Changes\n")
    return root


@pytest.fixture
def box(job: Path) -> BuiltinToolBox:
    return BuiltinToolBox(root=job, cwd=job, overlay_dir=job / "_intelligence")


async def call(box: BuiltinToolBox, name: str, **arguments: Any) -> ToolOutcome:
    return await box.call(name, arguments)


async def ok(box: BuiltinToolBox, name: str, **arguments: Any) -> str:
    outcome = await box.call(name, arguments)
    assert not outcome.is_error, outcome.text
    return outcome.text


async def error(box: BuiltinToolBox, name: str, **arguments: Any) -> str:
    outcome = await box.call(name, arguments)
    assert outcome.is_error, outcome.text
    assert outcome.text.startswith(f"{name}: ")
    return outcome.text


# -- specs and the allow-list -------------------------------------------------------------


def test_the_specs_use_claude_codes_names_and_arguments() -> None:
    assert list(BUILTIN_TOOL_SPECS) == SEVEN
    properties = {
        name: set(spec.input_schema["properties"]) for name, spec in BUILTIN_TOOL_SPECS.items()
    }
    assert properties["Read"] == {"file_path", "offset", "limit"}
    assert properties["Write"] == {"file_path", "content"}
    assert properties["Edit"] == {"file_path", "old_string", "new_string", "replace_all"}
    assert properties["Glob"] == {"pattern", "path"}
    assert {"pattern", "path", "glob", "output_mode", "-i", "-n", "head_limit"} <= properties[
        "Grep"
    ]
    assert properties["Bash"] == {"command", "timeout", "description"}
    assert properties["Skill"] == {"skill"}
    assert BUILTIN_TOOL_SPECS["Edit"].input_schema["required"] == [
        "file_path",
        "old_string",
        "new_string",
    ]


def test_specs_offer_only_the_allowed_built_ins(job: Path) -> None:
    allowed = {"Bash", "Read", "Task", "mcp__coro__log"}
    box = BuiltinToolBox(root=job, cwd=job, overlay_dir=job / "_intelligence", allowed=allowed)
    assert [spec.name for spec in box.specs()] == ["Read", "Bash"]
    everything = BuiltinToolBox(root=job, cwd=job, overlay_dir=job / "_intelligence")
    assert [spec.name for spec in everything.specs()] == SEVEN


def test_spec_descriptions_quote_the_boxs_limits(job: Path) -> None:
    box = BuiltinToolBox(
        root=job,
        cwd=job,
        overlay_dir=job,
        bash_default_timeout=30,
        bash_max_timeout=90,
        output_cap=8192,
    )
    bash = next(spec for spec in box.specs() if spec.name == "Bash")
    assert "default 30000" in bash.description and "at most 90000" in bash.description
    assert "8 KiB" in bash.description


async def test_a_tool_left_off_the_allow_list_is_refused_with_the_allowed_ones(job: Path) -> None:
    box = BuiltinToolBox(
        root=job, cwd=job, overlay_dir=job / "_intelligence", allowed={"Read", "Glob"}
    )
    outcome = await call(box, "Write", file_path="x.txt", content="x")
    assert outcome.is_error
    assert "'Write' is not allowed in this phase" in outcome.text
    assert "Read, Glob" in outcome.text
    assert not (job / "x.txt").exists()
    unknown = await call(box, "Frobnicate")
    assert unknown.is_error and "unknown tool 'Frobnicate'" in unknown.text


async def test_wrong_arguments_name_the_argument_and_the_call_shape(box: BuiltinToolBox) -> None:
    text = await error(box, "Read", filepath="src/app.py")
    assert "argument 'file_path' is required" in text
    assert "unknown argument 'filepath' (did you mean 'file_path'?)" in text
    assert "Read(file_path, offset?, limit?)" in text
    text = await error(box, "Read", file_path="src/app.py", limit=0)
    assert "argument 'limit'" in text
    text = await error(box, "Grep", pattern="x", output_mode="lines")
    assert "argument 'output_mode'" in text


def test_the_box_refuses_a_cwd_outside_its_root(job: Path, outside: Path) -> None:
    with pytest.raises(ValueError, match="working directory"):
        BuiltinToolBox(root=job, cwd=outside, overlay_dir=job / "_intelligence")
    with pytest.raises(ValueError, match="not a directory"):
        BuiltinToolBox(root=job / "missing", cwd=job, overlay_dir=job / "_intelligence")


async def test_calls_after_aclose_are_refused(box: BuiltinToolBox) -> None:
    await box.aclose()
    await box.aclose()  # idempotent
    outcome = await call(box, "Read", file_path="README.md")
    assert outcome.is_error and "closed" in outcome.text


# -- Read ---------------------------------------------------------------------------------


async def test_read_numbers_lines_like_cat_n(box: BuiltinToolBox) -> None:
    text = await ok(box, "Read", file_path="src/app.py")
    assert text.splitlines()[:2] == ["     1\tdef main():", "     2\t    return 1"]
    assert "showing lines" not in text


async def test_read_from_an_offset_with_a_limit_says_how_to_read_on(
    box: BuiltinToolBox,
) -> None:
    text = await ok(box, "Read", file_path="src/app.py", offset=2, limit=2)
    assert text.splitlines() == [
        "     2\t    return 1",
        "     3\t",
        "[showing lines 2-3 of 6; read on with offset=4]",
    ]


async def test_read_stops_at_2000_lines_and_cuts_long_lines(job: Path, box: BuiltinToolBox) -> None:
    lines = [f"line {n}" for n in range(1, 2501)]
    lines[4] = "x" * 2500
    (job / "big.txt").write_text("\n".join(lines) + "\n")
    box = BuiltinToolBox(
        root=job, cwd=job, overlay_dir=job / "_intelligence", output_cap=1024 * 1024
    )
    text = await ok(box, "Read", file_path="big.txt")
    shown = text.splitlines()
    assert shown[-2] == "  2000\tline 2000"
    assert shown[-1] == "[showing lines 1-2000 of 2500; read on with offset=2001]"
    assert shown[4] == "     5\t" + "x" * 2000 + "… [500 more characters on this line]"


async def test_read_caps_its_result_and_says_where_to_go_on(job: Path) -> None:
    (job / "long.txt").write_text("".join(f"{'y' * 90} {n}\n" for n in range(1, 501)))
    box = BuiltinToolBox(root=job, cwd=job, overlay_dir=job / "_intelligence", output_cap=4096)
    text = await ok(box, "Read", file_path="long.txt")
    assert len(text.encode()) <= 4096
    last_line = text.splitlines()[-2]
    last = int(last_line.split("\t")[0])
    assert f"after line {last} of 500; read on with offset={last + 1}" in text
    follow = await ok(box, "Read", file_path="long.txt", offset=last + 1, limit=1)
    assert follow.startswith(f"{last + 1:>6}\t")


async def test_read_shows_crlf_lines_without_carriage_returns(
    job: Path, box: BuiltinToolBox
) -> None:
    (job / "dos.txt").write_bytes(b"one\r\ntwo\r\n")
    assert await ok(box, "Read", file_path="dos.txt") == "     1\tone\n     2\ttwo\n"


async def test_read_an_empty_file(job: Path, box: BuiltinToolBox) -> None:
    (job / "empty.txt").write_text("")
    assert "empty" in await ok(box, "Read", file_path="empty.txt")


@pytest.mark.parametrize(
    ("setup", "file_path", "expected"),
    [
        (
            lambda job: (job / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0"),
            "logo.png",
            "binary",
        ),
        (lambda job: None, "src", "is a directory, not a file; list its files with Glob"),
        (lambda job: None, "nope.txt", "'nope.txt' does not exist"),
        (lambda job: os.mkfifo(job / "fifo"), "fifo", "not a regular file"),
    ],
    ids=["binary", "directory", "missing", "fifo"],
)
async def test_read_refuses_what_it_cannot_show(
    job: Path, box: BuiltinToolBox, setup: Any, file_path: str, expected: str
) -> None:
    setup(job)
    text = await error(box, "Read", file_path=file_path)
    assert expected in text and "argument 'file_path'" in text


async def test_read_refuses_an_offset_past_the_end(box: BuiltinToolBox) -> None:
    text = await error(box, "Read", file_path="src/app.py", offset=40)
    assert "argument 'offset'" in text and "only 6 lines" in text


async def test_relative_paths_start_at_cwd_and_absolute_ones_inside_root_work(
    job: Path,
) -> None:
    box = BuiltinToolBox(root=job, cwd=job / "src", overlay_dir=job / "_intelligence")
    assert "def main" in await ok(box, "Read", file_path="app.py")
    assert "# Demo" in await ok(box, "Read", file_path="../README.md")
    assert "# Demo" in await ok(box, "Read", file_path=str(job / "README.md"))


# -- Write --------------------------------------------------------------------------------


async def test_write_creates_parents_and_reports_what_it_wrote(
    job: Path, box: BuiltinToolBox
) -> None:
    text = await ok(box, "Write", file_path="docs/guide/intro.md", content="# Intro\nHello\n")
    assert text == "Created docs/guide/intro.md: wrote 14 bytes (2 lines)."
    assert (job / "docs" / "guide" / "intro.md").read_text() == "# Intro\nHello\n"


async def test_write_replaces_atomically_and_keeps_the_mode(job: Path, box: BuiltinToolBox) -> None:
    script = job / "run.sh"
    script.write_text("#!/bin/sh\necho old\n")
    script.chmod(0o755)
    before = script.stat().st_ino
    text = await ok(box, "Write", file_path="run.sh", content="#!/bin/sh\necho new\n")
    assert text.startswith("Replaced run.sh")
    assert script.read_text() == "#!/bin/sh\necho new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert script.stat().st_ino != before  # a new file renamed over the old one
    assert sorted(p.name for p in job.iterdir() if p.name.startswith(".coro-")) == []


async def test_write_refuses_a_directory(box: BuiltinToolBox) -> None:
    assert "is a directory" in await error(box, "Write", file_path="src", content="x")


async def test_write_through_a_symlink_inside_root_changes_its_target(
    job: Path, box: BuiltinToolBox
) -> None:
    (job / "alias.md").symlink_to(job / "README.md")
    await ok(box, "Write", file_path="alias.md", content="# New\n")
    assert (job / "README.md").read_text() == "# New\n"
    assert (job / "alias.md").is_symlink()


# -- Edit ---------------------------------------------------------------------------------


async def test_edit_replaces_one_occurrence_and_shows_the_result(
    job: Path, box: BuiltinToolBox
) -> None:
    text = await ok(
        box,
        "Edit",
        file_path="src/app.py",
        old_string="def helper():\n    return 1",
        new_string="def helper():\n    return 2",
    )
    assert text.startswith("Edited src/app.py: replaced 1 occurrence.")
    assert "     6\t    return 2" in text
    assert (job / "src" / "app.py").read_text().endswith("def helper():\n    return 2\n")


async def test_edit_refuses_an_ambiguous_string_then_replaces_all(
    job: Path, box: BuiltinToolBox
) -> None:
    text = await error(
        box, "Edit", file_path="src/app.py", old_string="return 1", new_string="return 0"
    )
    assert "occurs 2 times" in text and "replace_all" in text
    assert "return 0" not in (job / "src" / "app.py").read_text()
    done = await ok(
        box,
        "Edit",
        file_path="src/app.py",
        old_string="return 1",
        new_string="return 0",
        replace_all=True,
    )
    assert "replaced 2 occurrences" in done
    assert (job / "src" / "app.py").read_text().count("return 0") == 2


async def test_edit_says_a_missing_string_was_not_found_without_echoing_it(
    box: BuiltinToolBox,
) -> None:
    old = "unfindable " * 5000
    text = await error(box, "Edit", file_path="src/app.py", old_string=old, new_string="x")
    assert "was not found in src/app.py" in text
    assert len(text) < 500


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"old_string": "return 1", "new_string": "return 1"}, "argument 'new_string' is the same"),
        ({"old_string": "", "new_string": "x"}, "argument 'old_string' is empty"),
        ({"file_path": "nope.py", "old_string": "a", "new_string": "b"}, "create it with Write"),
    ],
    ids=["unchanged", "empty", "missing-file"],
)
async def test_edit_refusals(box: BuiltinToolBox, arguments: dict[str, Any], expected: str) -> None:
    text = await error(box, "Edit", **{"file_path": "src/app.py", **arguments})
    assert expected in text


async def test_edit_keeps_crlf_line_ends_and_bytes_that_are_not_utf8(
    job: Path, box: BuiltinToolBox
) -> None:
    (job / "dos.txt").write_bytes(b"caf\xe9\r\nold line\r\nend\r\n")
    await ok(
        box, "Edit", file_path="dos.txt", old_string="old line\nend", new_string="new line\nend"
    )
    assert (job / "dos.txt").read_bytes() == b"caf\xe9\r\nnew line\r\nend\r\n"


# -- Glob ---------------------------------------------------------------------------------


async def test_glob_lists_matches_newest_first_relative_to_cwd(
    job: Path, box: BuiltinToolBox
) -> None:
    (job / "src" / "old.py").write_text("")
    (job / "src" / "pkg").mkdir()
    (job / "src" / "pkg" / "new.py").write_text("")
    for age, name in enumerate(["src/pkg/new.py", "src/app.py", "src/old.py"]):
        os.utime(job / name, (1_700_000_000 - age * 100, 1_700_000_000 - age * 100))
    assert (await ok(box, "Glob", pattern="**/*.py")).splitlines() == [
        "src/pkg/new.py",
        "src/app.py",
        "src/old.py",
    ]
    assert (await ok(box, "Glob", pattern="src/*.py")).splitlines() == ["src/app.py", "src/old.py"]
    assert (await ok(box, "Glob", pattern="*.py", path="src/pkg")).splitlines() == [
        "src/pkg/new.py"
    ]
    braces = (await ok(box, "Glob", pattern="**/*.{md,py}")).splitlines()
    assert "README.md" in braces and "src/app.py" in braces


async def test_glob_skips_git_and_caps_at_100(job: Path, box: BuiltinToolBox) -> None:
    (job / ".git").mkdir()
    (job / ".git" / "config.txt").write_text("")
    (job / "many").mkdir()
    for n in range(130):
        (job / "many" / f"f{n:03}.txt").write_text("")
    text = await ok(box, "Glob", pattern="**/*.txt")
    lines = text.splitlines()
    assert len(lines) == 101 and ".git/config.txt" not in text
    assert lines[-1].startswith("[showing the 100 newest of 130 matches")


async def test_glob_with_no_match_and_bad_paths(box: BuiltinToolBox) -> None:
    assert "No files match" in await ok(box, "Glob", pattern="**/*.rs")
    assert "is a file, not a directory" in await error(box, "Glob", pattern="*", path="README.md")
    assert "does not exist" in await error(box, "Glob", pattern="*", path="nowhere")
    assert "'..'" in await error(box, "Glob", pattern="**/../*")


# -- Grep ---------------------------------------------------------------------------------


@pytest.fixture
def corpus(job: Path) -> Path:
    (job / "src" / "util.py").write_text("import os\n\nTODO = 1\n# todo: later\n")
    (job / "notes.md").write_text("TODO write docs\n")
    (job / "blob.bin").write_bytes(b"TODO\0\1\2")
    (job / ".git").mkdir()
    (job / ".git" / "HEAD").write_text("TODO\n")
    os.utime(job / "notes.md", (1_700_000_000, 1_700_000_000))
    return job


async def test_grep_lists_matching_files_newest_first(corpus: Path, box: BuiltinToolBox) -> None:
    text = await ok(box, "Grep", pattern="TODO")
    assert text.splitlines() == ["Found 2 files", "src/util.py", "notes.md"]


async def test_grep_content_count_and_options(corpus: Path, box: BuiltinToolBox) -> None:
    assert await ok(box, "Grep", pattern="todo", output_mode="content", **{"-i": True}) == (
        "notes.md:1:TODO write docs\nsrc/util.py:3:TODO = 1\nsrc/util.py:4:# todo: later"
    )
    assert await ok(box, "Grep", pattern="TODO", output_mode="content", **{"-n": False}) == (
        "notes.md:TODO write docs\nsrc/util.py:TODO = 1"
    )
    assert await ok(box, "Grep", pattern="(?i)todo", output_mode="count") == (
        "Found 3 matching lines in 2 files\nnotes.md:1\nsrc/util.py:2"
    )
    assert await ok(box, "Grep", pattern="TODO", glob="*.py") == "Found 1 file\nsrc/util.py"
    assert await ok(box, "Grep", pattern="TODO", type="md") == "Found 1 file\nnotes.md"
    assert await ok(box, "Grep", pattern="TODO", path="notes.md") == "Found 1 file\nnotes.md"


async def test_grep_context_lines_and_separators(job: Path, box: BuiltinToolBox) -> None:
    (job / "ctx.txt").write_text("a\nhit 1\nb\nc\nd\ne\nhit 2\nf\n")
    text = await ok(box, "Grep", pattern="hit", path="ctx.txt", output_mode="content", **{"-C": 1})
    assert text.splitlines() == [
        "ctx.txt-1-a",
        "ctx.txt:2:hit 1",
        "ctx.txt-3-b",
        "--",
        "ctx.txt-6-e",
        "ctx.txt:7:hit 2",
        "ctx.txt-8-f",
    ]


async def test_grep_head_limit_and_output_cap(job: Path) -> None:
    (job / "many.txt").write_text("".join(f"match {n}\n" for n in range(1000)))
    box = BuiltinToolBox(root=job, cwd=job, overlay_dir=job / "_intelligence", output_cap=2048)
    limited = await ok(box, "Grep", pattern="match", output_mode="content", head_limit=3)
    assert limited.splitlines() == [
        "many.txt:1:match 0",
        "many.txt:2:match 1",
        "many.txt:3:match 2",
        "[stopped at head_limit=3]",
    ]
    capped = await ok(box, "Grep", pattern="match", output_mode="content")
    assert len(capped.encode()) <= 2048
    assert capped.splitlines()[-1].startswith("[output capped at")


async def test_grep_errors(box: BuiltinToolBox) -> None:
    text = await error(box, "Grep", pattern="foo(")
    assert "argument 'pattern'" in text and "not a valid regular expression" in text
    assert "unknown file type 'cobol'" in await error(box, "Grep", pattern="x", type="cobol")
    assert "No matches" in await ok(box, "Grep", pattern="no such text anywhere")


# -- Skill --------------------------------------------------------------------------------


async def test_skill_lists_the_overlays_skills(box: BuiltinToolBox) -> None:
    assert await ok(box, "Skill") == (
        "Available skills (load one with Skill and skill=<name>):\n"
        "- release-notes: Write release notes from merged pull requests."
    )


async def test_skill_loads_one_by_name_with_its_other_files(box: BuiltinToolBox) -> None:
    text = await ok(box, "Skill", skill="release-notes")
    assert text.startswith("Skill: release-notes\nWrite release notes from merged pull requests.")
    assert "Base directory: _intelligence/.claude/skills/notes" in text
    assert "# Release notes\n\n1. Collect the merged PRs." in text
    assert "---" not in text  # the front matter is not repeated
    assert text.endswith("- _intelligence/.claude/skills/notes/template.md")
    assert "Skill: release-notes" in await ok(box, "Skill", skill="notes")  # the directory name


async def test_skill_unknown_lists_the_available_ones(box: BuiltinToolBox) -> None:
    text = await error(box, "Skill", skill="deploy")
    assert "unknown skill 'deploy'; available skills: release-notes" in text


async def test_skill_with_unreadable_front_matter_is_listed_with_the_problem(
    job: Path, box: BuiltinToolBox
) -> None:
    broken = job / "_intelligence" / ".claude" / "skills" / "broken"
    broken.mkdir()
    (broken / "SKILL.md").write_text("---\nname: [unclosed\n")
    text = await ok(box, "Skill")
    assert "- broken: (its front matter cannot be read:" in text


async def test_no_skills(tmp_path: Path) -> None:
    box = BuiltinToolBox(root=tmp_path, cwd=tmp_path, overlay_dir=tmp_path / "_intelligence")
    assert await ok(box, "Skill") == "This job has no skills."
    assert "none" in await error(box, "Skill", skill="x")


# -- confinement --------------------------------------------------------------------------


@pytest.fixture
def escapes(job: Path, outside: Path) -> dict[str, str]:
    """Paths that name something outside the job, by every route we know."""
    (job / "leak.txt").symlink_to(outside / "secret.txt")
    (job / "out").symlink_to(outside)
    return {
        "dotdot": "../outside/secret.txt",
        "dotdot-deep": "src/../../outside/secret.txt",
        "etc": "/etc/passwd",
        "absolute": str(outside / "secret.txt"),
        "symlinked-file": "leak.txt",
        "symlinked-dir": "out/secret.txt",
        "symlinked-dir-dotdot": "out/../outside/secret.txt",
    }


ESCAPES = [
    "dotdot",
    "dotdot-deep",
    "etc",
    "absolute",
    "symlinked-file",
    "symlinked-dir",
    "symlinked-dir-dotdot",
]


@pytest.mark.parametrize("route", ESCAPES)
async def test_read_refuses_every_escape(
    box: BuiltinToolBox, escapes: dict[str, str], route: str
) -> None:
    text = await error(box, "Read", file_path=escapes[route])
    assert "outside the job's working directory" in text
    assert "TOP SECRET" not in text


@pytest.mark.parametrize("route", ESCAPES)
async def test_write_refuses_every_escape(
    box: BuiltinToolBox, escapes: dict[str, str], outside: Path, route: str
) -> None:
    text = await error(box, "Write", file_path=escapes[route], content="pwned\n")
    assert "outside the job's working directory" in text
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"


async def test_write_refuses_new_files_through_a_symlinked_directory(
    box: BuiltinToolBox, escapes: dict[str, str], outside: Path
) -> None:
    await error(box, "Write", file_path="out/new/planted.txt", content="x")
    await error(box, "Write", file_path="out/planted.txt", content="x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


@pytest.mark.parametrize("route", ESCAPES)
async def test_edit_refuses_every_escape(
    box: BuiltinToolBox, escapes: dict[str, str], outside: Path, route: str
) -> None:
    text = await error(box, "Edit", file_path=escapes[route], old_string="TOP", new_string="NO")
    assert "outside the job's working directory" in text
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"


@pytest.mark.parametrize(
    "file_path",
    [
        "_intelligence/new.md",
        "_intelligence/.claude/skills/notes/SKILL.md",
        "_intelligence/.claude/skills/fresh/SKILL.md",
        "overlay-link/new.md",
    ],
)
async def test_the_overlay_is_read_only(job: Path, box: BuiltinToolBox, file_path: str) -> None:
    (job / "overlay-link").symlink_to(job / "_intelligence")
    skill = job / "_intelligence" / ".claude" / "skills" / "notes" / "SKILL.md"
    write = await error(box, "Write", file_path=file_path, content="x")
    assert "read-only" in write and "mcp__coro__propose_change" in write
    edit = await error(box, "Edit", file_path=file_path, old_string="Release", new_string="X")
    assert "read-only" in edit
    assert skill.read_text() == SKILL_MD
    assert not (job / "_intelligence" / "new.md").exists()
    assert "Release notes" in await ok(
        box, "Read", file_path="_intelligence/.claude/skills/notes/SKILL.md"
    )


async def test_the_overlay_is_read_only_by_absolute_path(job: Path, box: BuiltinToolBox) -> None:
    target = job / "_intelligence" / "planted.md"
    assert "read-only" in await error(box, "Write", file_path=str(target), content="x")
    assert not target.exists()


async def test_glob_neither_follows_nor_lists_symlinks_out_of_root(
    box: BuiltinToolBox, escapes: dict[str, str]
) -> None:
    text = await ok(box, "Glob", pattern="**/*")
    assert "secret" not in text and "leak.txt" not in text
    assert "README.md" in text
    assert "outside" in await error(box, "Glob", pattern="*", path="out")
    assert "outside" in await error(box, "Glob", pattern="*", path="..")
    assert "outside" in await error(box, "Glob", pattern="../outside/*")
    assert "outside" in await error(box, "Glob", pattern="out/*")


async def test_grep_neither_follows_nor_reads_symlinks_out_of_root(
    box: BuiltinToolBox, escapes: dict[str, str]
) -> None:
    text = await ok(box, "Grep", pattern="TOP SECRET", output_mode="content")
    assert text == "No matches for 'TOP SECRET'."
    for path in ("leak.txt", "out", "..", "/etc"):
        assert "outside the job's working directory" in await error(
            box, "Grep", pattern="SECRET", path=path
        )


async def test_symlinks_that_stay_inside_root_are_followed(job: Path, box: BuiltinToolBox) -> None:
    (job / "readme-link").symlink_to(job / "README.md")
    assert "# Demo" in await ok(box, "Read", file_path="readme-link")
    assert "readme-link" in await ok(box, "Glob", pattern="readme-*")


# -- bash_environment ---------------------------------------------------------------------


def test_bash_environment_leaves_out_coros_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    planted = {
        "GITHUB_TOKEN": "ghp_abc",
        "MY_SERVICE_API_KEY": "k-123",
        "DB_PASSWORD": "hunter2",
        "ANTHROPIC_API_KEY": "sk-ant",
        "ANTHROPIC_AUTH_TOKEN": "tok",
        "ANTHROPIC_BASE_URL": "http://proxy",
        "CORO_UPLINK_URL": "wss://x",
        "CORO_HOME": "/home/dev/.coro",
        "INNOCENT_LOOKING": "s3cret-from-config",
        "EMPTY_VALUE": "",
        "PROJECT_KEY": "PROJ",
        "PAGER": "less",
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    env = bash_environment(secrets=["s3cret-from-config", ""])
    for name in (
        "GITHUB_TOKEN",
        "MY_SERVICE_API_KEY",
        "DB_PASSWORD",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "CORO_UPLINK_URL",
        "INNOCENT_LOOKING",
    ):
        assert name not in env, name
    assert env["CORO_HOME"] == "/home/dev/.coro"
    assert env["EMPTY_VALUE"] == "" and env["PROJECT_KEY"] == "PROJ"
    assert env["PATH"] == os.environ["PATH"]
    assert (env["GIT_TERMINAL_PROMPT"], env["PAGER"], env["GIT_PAGER"]) == ("0", "cat", "cat")


async def test_a_symlink_swapped_in_after_the_path_check_is_still_refused(
    job: Path, outside: Path, escapes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The descriptor checks hold even when the path check is fooled (a race with a swap)."""

    def unresolved(self: Workspace, raw: str, *, argument: str = "file_path") -> str:
        return os.path.join(self.cwd, raw)  # as if the symlinks appeared after realpath ran

    monkeypatch.setattr(Workspace, "resolve", unresolved)
    box = BuiltinToolBox(root=job, cwd=job, overlay_dir=job / "_intelligence")
    assert "symbolic link" in await error(box, "Read", file_path="leak.txt")
    assert "leads out of the working directory" in await error(
        box, "Read", file_path="out/secret.txt"
    )
    assert "leads out of the working directory" in await error(
        box, "Write", file_path="out/planted.txt", content="x"
    )
    assert "leads out of the working directory" in await error(
        box, "Edit", file_path="out/secret.txt", old_string="TOP", new_string="NO"
    )
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"
