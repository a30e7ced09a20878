"""The Inspect AI peer: one model-graded rubric call per item, for bench/peers.py.

Runs in the peers venv (scripts/bench-peers-setup):

    MOCK_BASE_URL=http://127.0.0.1:P/v1 MOCK_API_KEY=bench \
    ~/.cache/tracejury/peers-venv/bin/inspect eval inspect_task.py \
        --model openai-api/mock/mock-judge -T items=ITEMS.jsonl [--max-connections N]

(``openai-api/<name>/<model>`` is Inspect's provider for OpenAI-compatible servers, on chat
completions; ``openai/...`` would call the Responses API, which the mock does not serve.
Inspect takes only a relative task path: run it from the folder holding this file.)

The answer to grade is already in the item (a stored production answer, as tracejury grades
stored traces), so the solver only puts it in ``state.output``: no generation call. The
scorer is Inspect's own ``model_graded_qa`` with the answer-correctness rubric as its template
and the evidence block as the criterion: one grading call per item, through the task's model.
The mock replies JSON, not Inspect's ``GRADE: C`` line, so Inspect leaves the grades unscored
(accuracy nan): the calls and their cost are Inspect's all the same.
"""

from __future__ import annotations

from inspect_ai import Task, task
from inspect_ai.dataset import FieldSpec, json_dataset
from inspect_ai.model import ModelOutput
from inspect_ai.scorer import model_graded_qa
from inspect_ai.solver import Generate, Solver, TaskState, solver

TEMPLATE = """Rubric: answer correctness.
Decide whether the final answer is supported by the evidence: every fact it states must
agree with the tool output (tool_calls[].snapshot) or the retrieved documents
(retrieval.chunks). An answer that states facts the evidence contradicts, or facts with
no support in the evidence, is "fail".

[Question]: {question}
[Answer]: {answer}

{criterion}

{instructions}
"""


@solver
def stored_answer() -> Solver:
    """The item's stored answer becomes the output (no model call)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        state.output = ModelOutput.from_content(model="stored", content=state.metadata["answer"])
        return state

    return solve


@task
def answer_correctness(items: str) -> Task:
    """Grade each item's stored answer against its evidence with one judge call."""
    dataset = json_dataset(items, FieldSpec(input="question", target="evidence", id="id",
                                            metadata=["answer"]))  # fmt: skip
    return Task(dataset=dataset, solver=stored_answer(), scorer=model_graded_qa(template=TEMPLATE))
