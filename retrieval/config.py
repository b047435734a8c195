"""Where retrieval keeps its state and how it is tuned; built from the composer's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from retrieval.embeddings import PACKAGED_MODEL
from retrieval.exact_search import EXACT_SEARCH_MAX_PRODUCTS
from retrieval.params import FusionParams, MFParams


@dataclass(frozen=True)
class RetrievalConfig:
    artifacts_dir: Path
    database_url: str
    chroma_path: Path
    chroma_url: str | None = None
    exact_search_max_products: int = EXACT_SEARCH_MAX_PRODUCTS
    embedding_model: str = PACKAGED_MODEL
    mf: MFParams = field(default_factory=MFParams)
    fusion: FusionParams = field(default_factory=FusionParams)
    pseudonym_salt: str = "page-composer"
    device: str = "auto"  # auto | cpu | cuda: the embedding model and ALS training

    @property
    def index_dir(self) -> Path:
        return self.artifacts_dir / "index"

    @property
    def embeddings_file(self) -> Path:
        return self.index_dir / "embeddings.npz"
