"""A study's rows, typed: one frozen dataclass per kind of row, whose fields, in order, are its
Parquet file's columns (each field's Arrow type given by :func:`column`). A step fills a :class:`Rows`
with records by field name; the schema is derived from the record, never written beside it."""

from __future__ import annotations

import dataclasses

import pyarrow as pa


def column(arrow: pa.DataType) -> dataclasses.Field:
    """A record's field and its Parquet column's type."""
    return dataclasses.field(metadata={"arrow": arrow})


def schema_of(record: type) -> pa.Schema:
    """The Parquet schema of a record type: its fields in order, each with its column's type."""
    return pa.schema([(field.name, field.metadata["arrow"]) for field in dataclasses.fields(record)])


class Rows:
    """Records of one type gathered column by column, then one Arrow table."""

    def __init__(self, record: type) -> None:
        self.record, self.schema = record, schema_of(record)
        self.columns: dict[str, list] = {name: [] for name in self.schema.names}

    def add(self, row) -> None:
        if not isinstance(row, self.record):
            raise TypeError(
                f"a {self.record.__name__} table takes {self.record.__name__} rows, not {type(row).__name__}"
            )
        for name in self.schema.names:
            self.columns[name].append(getattr(row, name))

    def table(self) -> pa.Table:
        return pa.table(self.columns, schema=self.schema)


class Predictions(Rows):
    """One task's predicted tokens as rows: each token decoded (``decode``: the model's token
    decoder) and scored by the task's first-token rule (``scoring``)."""

    def __init__(self, record: type, task: str, scoring: str, decode) -> None:
        super().__init__(record)
        self.task, self.scoring, self.decode = task, scoring, decode

    def scored(self, prompt, token) -> tuple[str, bool]:
        """The prediction's text and whether the prompt's answers accept it."""
        from taskvec.scoring import first_token_correct

        prediction = self.decode(int(token))
        return prediction, first_token_correct(prediction, prompt.answers, self.scoring)
