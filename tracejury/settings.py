"""Settings: the only reader of the environment (``TRACEJURY_*`` variables)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Runtime settings, read from ``TRACEJURY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TRACEJURY_", extra="ignore")

    database_url: str = "sqlite:///tracejury.db"
    """SQLAlchemy URL of the store; default a SQLite file in the working directory."""
    segmentation_path: str | None = None
    """A segmentation YAML to use instead of the shipped default."""
    ingest_batch_size: int = 2000
    """Lines per batch (one transaction) during ingest; bounds memory per ingest process."""
    ingest_workers: int = 2
    """Processes that prepare and write large inputs in parallel; 0 = all in this one."""
