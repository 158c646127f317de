"""Wait input is checked outside the flow's process with the `jsonschema` library against
the JSON Schema pydantic emitted: formats, `$ref`, `anyOf`, enums and numeric bounds."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from typing import Annotated, Any

import kitaru
import pydantic
import pytest
from kitaru import _schema


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Reviewer(pydantic.BaseModel):
    id: uuid.UUID
    since: dt.date


class Approval(pydantic.BaseModel):
    approved: bool
    level: Level
    score: Annotated[int, pydantic.Field(ge=0, le=10)]
    due: dt.datetime
    reviewer: Reviewer  # a `$ref` into `$defs`
    note: str | None = None  # `anyOf`


WAIT = {"name": "approve", "schema_json": json.dumps(Approval.model_json_schema())}
GOOD: dict[str, Any] = {
    "approved": True,
    "level": "high",
    "score": 7,
    "due": "2026-12-24T10:00:00Z",
    "reviewer": {"id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "since": "2024-02-29"},
    "note": None,
}


def test_a_good_answer_passes_and_pydantic_accepts_it_too() -> None:
    assert _schema.validate(WAIT, GOOD) == GOOD
    Approval.model_validate(GOOD)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"due": "next tuesday"}, "$.due"),  # format date-time
        ({"reviewer": {**GOOD["reviewer"], "id": "not-a-uuid"}}, "$.reviewer.id"),  # uuid
        ({"reviewer": {**GOOD["reviewer"], "since": "2023-02-29"}}, "$.reviewer.since"),  # date
        ({"level": "medium"}, "$.level"),  # enum
        ({"score": 11}, "$.score"),  # maximum
        ({"score": -1}, "$.score"),  # minimum
        ({"note": 5}, "$.note"),  # anyOf
        ({"reviewer": {"id": GOOD["reviewer"]["id"]}}, "$.reviewer"),  # required, via $ref
    ],
)
def test_a_bad_answer_is_refused_naming_the_field(change: dict[str, Any], where: str) -> None:
    bad = {**GOOD, **change}
    with pytest.raises(kitaru.KitaruWaitValidationError) as err:
        _schema.validate(WAIT, bad)
    assert f"{where}:" in str(err.value)
    # the flow's own check (pydantic) refuses the same answer
    with pytest.raises(pydantic.ValidationError):
        Approval.model_validate(bad)
