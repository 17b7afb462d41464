"""The scripted model without HTTP: script loading, answer choice, cache arithmetic, validation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from engine.model_server import (
    ModelScript,
    PromptCache,
    ScriptedModel,
    ScriptError,
    load_script,
)
from engine.model_server._request import (
    RequestContext,
    RequestError,
    last_tool_results,
    request_context,
    validate_request,
)

AUTH = {"x-api-key": "test"}

BASE = """\
model: claude-scripted
delay_ms: 5
chunk_chars: 8
phases:
  spec:
    - text: "I'll write the spec."
      tool_calls:
        - name: Write
          input: {file_path: SPEC.md, content: "# Spec\\n"}
        - name: mcp__coro__log
          input: {message: spec written}
    - text: Spec written.
  code:
    - tool_calls: [{name: Bash, input: {command: pytest -q}}]
    - when:
        - if_result_contains: failed
          tool_calls: [{name: Edit, input: {file_path: a.py, old_string: x, new_string: y}}]
        - if_result_matches: "^ERROR"
          text: It errored.
        - text: All green.
subagents:
  code-reviewer:
    - text: LGTM
chat:
  - text: What service is this for?
fallback:
  text: Done.
"""
GOOD = BASE + "faults:\n  - {phase: code, step: 0, kind: rate_limit, retry_after: 2, times: 1}\n"


def system_for(job_id: str, phase: str, subagent: str | None = None) -> list[dict[str, Any]]:
    """coro's system prompt as blocks: a ``# Current Job`` section, maybe a subagent heading."""
    job = json.dumps({"jobId": job_id, "type": "feature", "phase": phase}, indent=2)
    head = f"# Subagent: {subagent}\n\nReview the diff.\n\n" if subagent else "You are coro.\n\n"
    text = f"{head}# Current Job\n\nThis is the job you are executing.\n\n```json\n{job}\n```"
    return [{"type": "text", "text": text}]


def body_for(
    system: object, messages: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"model": "claude-test", "max_tokens": 256, "messages": messages or [user("go")]}
    if system is not None:
        body["system"] = system
    return {**body, **extra}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply_json(model: ScriptedModel, body: dict[str, Any], headers: dict[str, str] = AUTH) -> Any:
    reply = model.respond(json.dumps(body).encode(), headers)
    assert reply.json_body is not None
    return reply.json_body


def continued(body: dict[str, Any], message: dict[str, Any], result: str) -> dict[str, Any]:
    """``body`` followed by the assistant's ``message`` and a tool_result for each tool_use."""
    results = [
        {"type": "tool_result", "tool_use_id": block["id"], "content": result}
        for block in message["content"]
        if block["type"] == "tool_use"
    ]
    messages = [
        *body["messages"],
        {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": results or "go on"},
    ]
    return {**body, "messages": messages}


# -- loading ------------------------------------------------------------------------------------


def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(GOOD)
    script = load_script(path)
    assert script.model == "claude-scripted" and script.chunk_chars == 8
    assert [call.name for call in script.phases["spec"][0].tool_calls] == [
        "Write",
        "mcp__coro__log",
    ]
    assert script.phases["spec"][0].tool_calls[0].input == {
        "file_path": "SPEC.md",
        "content": "# Spec\n",
    }
    assert len(script.phases["code"][1].when) == 3
    assert script.subagents["code-reviewer"][0].text == "LGTM"
    assert script.faults[0].kind == "rate_limit" and script.faults[0].retry_after == 2


def test_a_script_is_also_a_pydantic_model() -> None:
    script = ModelScript.model_validate({"phases": {"spec": [{"text": "hi"}]}})
    assert script.phases["spec"][0].text == "hi" and script.fallback is None


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("phases: {spec: [{text: hi}]}\ncolour: red\n", ["the top level", "unknown key 'colour'"]),
        ("phases: {spec: [{txt: hi}]}\n", ["phases.spec[0]", "unknown key 'txt'"]),
        ("phases: {spec: [{}]}\n", ["phases.spec[0]", "needs text, tool_calls or when"]),
        (
            "phases: {spec: [{tool_calls: [{name: 'bad name!', input: {}}]}]}\n",
            ["phases.spec[0].tool_calls[0].name", "'bad name!' is not a tool name"],
        ),
        (
            "phases: {spec: [{tool_calls: [{name: Bash, input: [ls]}]}]}\n",
            ["phases.spec[0].tool_calls[0].input", "dictionary"],
        ),
        (
            "phases: {code: [{when: [{if_result_matches: '(', text: x}]}]}\n",
            ["phases.code[0].when[0].if_result_matches", "not a valid regular expression"],
        ),
        (
            "phases: {code: [{when: [{if_result_contains: x}]}]}\n",
            ["phases.code[0].when[0]", "a case needs text or tool_calls"],
        ),
        (
            "subagents: {reviewer: [{text: ok, if_result_contains: x}]}\n",
            ["subagents.reviewer[0]", "unknown key 'if_result_contains'"],
        ),
        ("faults: [{kind: meltdown}]\n", ["faults[0].kind", "'rate_limit'"]),
        (
            "faults: [{kind: stall, retry_after: 3}]\n",
            ["faults[0]", "retry_after applies to kind rate_limit and overloaded only"],
        ),
        ("faults: [{kind: drop, times: 0}]\n", ["faults[0].times", "-1"]),
        ("faults: [{kind: drop, when: now}]\n", ["faults[0]", "unknown key 'when'"]),
        ("chunk_chars: 0\n", ["chunk_chars", "greater than or equal to 1"]),
        ("phases: [spec]\n", ["phases", "dictionary"]),
        ("- just a list\n", ["must be a mapping"]),
        ("phases: {spec: [text: 'unclosed\n", ["not valid YAML"]),
        ("# nothing but a comment\n", ["the script is empty"]),
    ],
)
def test_a_bad_file_names_the_file_and_the_field(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = tmp_path / "bad-script.yaml"
    path.write_text(text)
    with pytest.raises(ScriptError) as caught:
        load_script(path)
    message = caught.value.message
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_a_missing_file_is_a_script_error(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="cannot read the model script"):
        load_script(tmp_path / "absent.yaml")


def test_inline_yaml_names_its_source() -> None:
    with pytest.raises(ScriptError, match=r"^<inline>: phases.spec\[0\]: unknown key 'say'"):
        ModelScript.from_yaml("phases: {spec: [{say: hi}]}")


# -- answers ------------------------------------------------------------------------------------


def test_steps_are_taken_in_order_per_job_and_phase() -> None:
    model = ScriptedModel(ModelScript.from_yaml(GOOD))
    spec = body_for(system_for("job-1", "spec"))
    first = reply_json(model, spec)
    assert first["content"][0] == {"type": "text", "text": "I'll write the spec."}
    assert [b["name"] for b in first["content"][1:]] == ["Write", "mcp__coro__log"]
    assert first["stop_reason"] == "tool_use" and first["model"] == "claude-scripted"

    other_job = reply_json(model, body_for(system_for("job-2", "spec")))
    assert other_job["content"][0]["text"] == "I'll write the spec."

    second = reply_json(model, continued(spec, first, "ok"))
    assert second["content"] == [{"type": "text", "text": "Spec written."}]
    assert second["stop_reason"] == "end_turn"
    assert [r.step for r in model.requests] == [0, 0, 1]
    assert [(r.job_id, r.phase) for r in model.requests][:2] == [
        ("job-1", "spec"),
        ("job-2", "spec"),
    ]


def test_a_phase_visited_again_continues_with_its_next_steps() -> None:
    script = ModelScript.from_yaml("phases: {code: [{text: one}, {text: two}, {text: three}]}")
    model = ScriptedModel(script)
    texts = [
        reply_json(model, body_for(system_for("j", "code"), [user(f"visit {n}")]))["content"][0][
            "text"
        ]
        for n in range(4)
    ]
    assert texts == ["one", "two", "three", "(scripted model: no step left for phase code)"]


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ("3 failed, 2 passed", {"type": "tool_use", "name": "Edit"}),
        ("collecting\nERROR: no tests", {"type": "text", "text": "It errored."}),
        ("5 passed", {"type": "text", "text": "All green."}),
    ],
)
def test_when_cases_look_at_the_last_tool_results(result: str, expected: dict[str, str]) -> None:
    model = ScriptedModel(ModelScript.from_yaml(BASE))
    first = reply_json(model, body_for(system_for("j", "code")))
    second = reply_json(model, continued(body_for(system_for("j", "code")), first, result))
    block = second["content"][0]
    assert {key: block[key] for key in expected} == expected


def test_without_a_matching_case_the_step_then_the_fallback_answer() -> None:
    script = ModelScript.from_yaml(
        """
phases:
  code:
    - when: [{if_result_contains: boom, text: exploded}]
      text: step default
    - when: [{if_result_contains: boom, text: exploded}]
fallback:
  text: Done.
"""
    )
    model = ScriptedModel(script)
    texts = [
        reply_json(model, body_for(system_for("j", "code"), [user(str(n))]))["content"][0]["text"]
        for n in range(3)
    ]
    assert texts == ["step default", "Done.", "Done."]


def test_subagents_have_their_own_cursor_and_chat_counts_turns() -> None:
    model = ScriptedModel(ModelScript.from_yaml(GOOD))
    review = reply_json(model, body_for(system_for("j", "review", subagent="code-reviewer")))
    assert review["content"] == [{"type": "text", "text": "LGTM"}]
    assert model.requests[-1].subagent == "code-reviewer"
    again = reply_json(
        model, body_for(system_for("j", "review", subagent="code-reviewer"), [user("more")])
    )
    assert again["content"][0]["text"] == "Done."  # the script's fallback

    chat = reply_json(model, body_for("You help plan a job."))
    assert chat["content"] == [{"type": "text", "text": "What service is this for?"}]
    later = body_for(
        None, [user("hi"), {"role": "assistant", "content": "What service?"}, user("billing")]
    )
    assert reply_json(model, later)["content"][0]["text"] == "Done."
    assert [(r.job_id, r.step) for r in model.requests[-2:]] == [(None, 0), (None, 1)]


def test_a_repeated_body_gets_the_same_answer_without_advancing() -> None:
    script = ModelScript.from_yaml("phases: {code: [{tool_calls: [{name: Bash}]}, {text: b}]}")
    model = ScriptedModel(script)
    body = body_for(system_for("j", "code"))
    first = reply_json(model, body)
    reordered = json.loads(json.dumps(dict(reversed(list(body.items())))))
    assert reply_json(model, reordered) == first
    assert [r.replayed for r in model.requests] == [False, True]
    assert reply_json(model, continued(body, first, "ok"))["content"][0]["text"] == "b"


def test_a_fault_neither_advances_nor_is_remembered() -> None:
    model = ScriptedModel(ModelScript.from_yaml(GOOD))
    body = body_for(system_for("j", "code"))
    limited = model.respond(json.dumps(body).encode(), AUTH)
    assert limited.status == 429 and limited.headers["retry-after"] == "2"
    assert limited.json_body is not None
    assert limited.json_body["error"]["type"] == "rate_limit_error"
    answered = reply_json(model, body)
    assert answered["content"][0]["name"] == "Bash"
    assert [(r.status, r.fault, r.step, r.replayed) for r in model.requests] == [
        (429, "rate_limit", 0, False),
        (200, None, 0, False),
    ]


def test_tool_use_ids_are_stable_for_an_answer_and_unique_across_steps() -> None:
    script = ModelScript.from_yaml(
        "phases: {code: [{tool_calls: [{name: A}, {name: B}]}, {tool_calls: [{name: A}]}]}"
    )
    ids = []
    for _ in range(2):
        model = ScriptedModel(script)
        first = reply_json(model, body_for(system_for("j", "code")))
        second = reply_json(model, continued(body_for(system_for("j", "code")), first, "ok"))
        ids.append([b["id"] for b in first["content"] + second["content"]])
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 3 and all(i.startswith("toolu_") for i in ids[0])


# -- the system prompt --------------------------------------------------------------------------


def test_the_current_job_block_is_found_in_a_string_or_in_blocks() -> None:
    blocks = system_for("job-7", "review", subagent="code-reviewer")
    assert request_context({"system": blocks}) == RequestContext("job-7", "review", "code-reviewer")
    split = [{"type": "text", "text": "Intro."}, *system_for("job-7", "code")]
    assert request_context({"system": split}) == RequestContext("job-7", "code", None)
    assert request_context({"system": system_for("a", "b")[0]["text"]}).phase == "b"
    assert request_context({"system": "Plan with me."}).is_chat
    assert request_context({}).is_chat


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("# Current Job\n\nno fence here", "no ```json block"),
        ("# Current Job\n\n```json\n{oops}\n```", "JSON is invalid"),
        ('# Current Job\n\n```json\n{"jobId": "j"}\n```', "no 'phase' string"),
    ],
)
def test_a_broken_current_job_block_is_an_error(section: str, problem: str) -> None:
    with pytest.raises(RequestError, match=problem):
        request_context({"system": section})


def test_a_broken_current_job_block_is_a_400_naming_it() -> None:
    model = ScriptedModel(ModelScript())
    reply = model.respond(json.dumps(body_for("# Current Job\n\nnothing")).encode(), AUTH)
    assert reply.status == 400 and reply.json_body is not None
    assert "Current Job" in reply.json_body["error"]["message"]


def test_last_tool_results_reads_strings_and_text_blocks_of_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "x"}]},
        {"role": "assistant", "content": "..."},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "b", "content": "first"},
                {
                    "type": "tool_result",
                    "tool_use_id": "c",
                    "content": [{"type": "text", "text": "second"}, {"type": "image"}],
                },
                {"type": "text", "text": "not a result"},
            ],
        },
    ]
    assert last_tool_results({"messages": messages}) == "first\nsecond"


# -- validation ---------------------------------------------------------------------------------


def tool_turn(ids: list[str], answered: list[str]) -> list[dict[str, Any]]:
    return [
        user("go"),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": i, "name": "Bash", "input": {}} for i in ids],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": i, "content": ""} for i in answered],
        },
    ]


def marked(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"max_tokens": 1, "messages": []}, "model: Field required"),
        ({"model": "m", "messages": []}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 1}, "messages: Field required"),
        ({"model": "m", "max_tokens": "many", "messages": []}, "max_tokens: Input should be"),
        (
            body_for(None, tool_turn(["toolu_a", "toolu_b"], ["toolu_a"])),
            "messages.2: `tool_use` ids were found without `tool_result` blocks immediately "
            "after: toolu_b",
        ),
        (
            body_for(None, tool_turn(["toolu_a"], ["toolu_a", "toolu_z"])),
            "messages.2.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_z",
        ),
        (
            body_for(None, tool_turn(["toolu_a"], [])[:2]),
            "`tool_use` ids were found without `tool_result` blocks",
        ),
        (
            body_for([marked("a"), marked("b")], [{"role": "user", "content": [marked("c")] * 3}]),
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
    ],
)
def test_invalid_requests_get_the_real_api_messages(body: dict[str, Any], problem: str) -> None:
    assert problem in (validate_request(body) or "")
    reply = ScriptedModel(ModelScript()).respond(json.dumps(body).encode(), AUTH)
    assert reply.status == 400 and reply.json_body is not None
    assert reply.json_body["error"]["type"] == "invalid_request_error"
    assert problem in reply.json_body["error"]["message"]


def test_valid_requests_pass() -> None:
    assert validate_request(body_for(None, tool_turn(["toolu_a"], ["toolu_a"]))) is None
    four = body_for([marked("a")], [{"role": "user", "content": [marked("c")] * 3}])
    assert validate_request(four) is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"x-api-key": ""}, 401),
        ({"authorization": "Basic abc"}, 401),
        ({"authorization": "Bearer tok"}, 200),
        ({"x-api-key": "k"}, 200),
    ],
)
def test_credentials_are_required(headers: dict[str, str], status: int) -> None:
    model = ScriptedModel(ModelScript())
    reply = model.respond(json.dumps(body_for(None)).encode(), headers)
    assert reply.status == status
    assert reply.headers["request-id"].startswith("req_")
    if status == 401:
        assert reply.json_body is not None
        assert reply.json_body["error"]["type"] == "authentication_error"


def test_the_record_redacts_credentials_and_keeps_the_body() -> None:
    model = ScriptedModel(ModelScript())
    body = body_for(system_for("j", "spec"))
    model.respond(json.dumps(body).encode(), {"authorization": "Bearer s3cret", "x-trace": "1"})
    (recorded,) = model.requests
    assert recorded.headers == {"authorization": "***", "x-trace": "1"}
    assert recorded.body == body and (recorded.job_id, recorded.phase) == ("j", "spec")
    model.clear()
    assert model.requests == []


# -- prompt cache -------------------------------------------------------------------------------


def tokens(fragment: object) -> int:
    return math.ceil(len(json.dumps(fragment)) / 4)


def test_without_breakpoints_everything_is_input() -> None:
    body = body_for("system text", [user("hello")])
    usage = PromptCache().measure(body)
    assert (usage.input_tokens, usage.cache_creation_input_tokens) == (
        tokens("system text") + tokens("hello"),
        0,
    )
    assert usage.cache_read_input_tokens == 0


def test_the_cache_writes_at_breakpoints_and_reads_the_longest_prefix_seen() -> None:
    tool = {
        "name": "Bash",
        "input_schema": {"type": "object"},
        "cache_control": {"type": "ephemeral"},
    }
    system = [marked("You are coro.")]
    first_turn = {"role": "user", "content": [marked("go")]}
    first = body_for(system, [first_turn], tools=[tool])
    cache = PromptCache()

    written = cache.measure(first)
    prefix = tokens(tool) + tokens(system[0]) + tokens(first_turn["content"][0])
    assert (written.cache_read_input_tokens, written.cache_creation_input_tokens) == (0, prefix)
    assert written.input_tokens == 0
    assert cache.measure(first, commit=False).cache_read_input_tokens == prefix

    answer = {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}
    later = {"type": "text", "text": "and then?"}
    tail = {"type": "text", "text": "unmarked tail"}
    # The breakpoint moves to the newest user message; the old prefix is still found.
    second = body_for(
        system,
        [
            {"role": "user", "content": [{"type": "text", "text": "go"}]},
            answer,
            {"role": "user", "content": [{**later, "cache_control": {"type": "ephemeral"}}, tail]},
        ],
        tools=[tool],
    )
    usage = cache.measure(second)
    marked_later = {**later, "cache_control": {"type": "ephemeral"}}
    assert usage.cache_read_input_tokens == tokens(tool) + tokens(system[0]) + tokens(
        {"type": "text", "text": "go"}
    )
    assert usage.cache_creation_input_tokens == tokens(answer["content"][0]) + tokens(marked_later)
    assert usage.input_tokens == tokens(tail)


def test_a_changed_system_prompt_reads_only_the_tools() -> None:
    tool = {
        "name": "Bash",
        "input_schema": {"type": "object"},
        "cache_control": {"type": "ephemeral"},
    }
    cache = PromptCache()
    cache.measure(body_for([marked("phase spec")], tools=[tool]))
    usage = cache.measure(body_for([marked("phase code")], tools=[tool]))
    assert usage.cache_read_input_tokens == tokens(tool)
    assert usage.cache_creation_input_tokens == tokens(marked("phase code"))
    assert usage.input_tokens == tokens("go")


def test_faults_match_phase_subagent_and_step_and_count_down() -> None:
    script = ModelScript.from_yaml(
        """
phases: {code: [{text: a}, {text: b}]}
subagents: {reviewer: [{text: r}]}
faults:
  - {kind: server_error, subagent: reviewer}
  - {kind: overloaded, phase: code, step: 1, times: -1}
"""
    )
    model = ScriptedModel(script)
    code = body_for(system_for("j", "code"))
    review = body_for(system_for("j", "code", subagent="reviewer"))
    statuses = [model.respond(json.dumps(b).encode(), AUTH).status for b in (code, review, review)]
    assert statuses == [200, 500, 200]
    step_one = body_for(system_for("j", "code"), [user("again")])
    for _ in range(3):
        assert model.respond(json.dumps(step_one).encode(), AUTH).status == 529
    assert model.requests[-1].step == 1
