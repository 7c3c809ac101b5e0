"""Base model for domain values: frozen, strict about unknown fields."""

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """An immutable value; every change makes a new object (``model_copy(update=...)``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
