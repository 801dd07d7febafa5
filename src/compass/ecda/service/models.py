"""The request and response bodies of the ingest endpoint, and the row-id path parameter."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ...errors import ConfigError
from ...langs import normalize_lang

RowId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="A row id (64-bit INTEGER)")]


class QueryIn(BaseModel):
    """One production query. ``id`` (optional) makes retries safe: a stored id is never
    stored again. ``ts`` is the client's time (Unix seconds), kept as given."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="At most the server's --max-query bytes in UTF-8 (64 KiB by default)")
    lang: str = Field(description="ISO 639-1/3 or BCP-47 code; stored as ISO 639-3")
    id: str | None = Field(None, min_length=1, max_length=256)
    ts: float | None = Field(None, allow_inf_nan=False)

    @field_validator("text")
    @classmethod
    def _not_blank_nor_too_long(cls, text: str, info: ValidationInfo) -> str:
        """The length limit comes from the validation context (the server's setting)."""
        if not text.strip():
            raise ValueError("text is empty or only whitespace")
        limit = (info.context or {}).get("max_query")
        if limit is not None and (size := len(text.encode())) > limit:
            raise ValueError(f"text is {size} bytes (UTF-8), over the limit of {limit} bytes per query "
                             "(the server's --max-query)")
        return text

    @field_validator("lang")
    @classmethod
    def _iso639_3(cls, lang: str) -> str:
        try:
            return normalize_lang(lang)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[QueryIn] = Field(min_length=1)


class IngestResult(BaseModel):
    stored: int = Field(description="Queries newly stored")
    duplicates: int = Field(description="Queries whose id was already stored (retries)")
    seqs: list[int] = Field(description="Each query's sequence number, in request order")
