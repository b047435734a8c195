"""Retrieval: catalog and events, embeddings and Chroma, MF, fusion, evaluation.

Never imports ``composer``; the composer sees only :class:`CandidateSet` and friends.
"""

from retrieval.ahead_store import AheadStore, KeptPage, QueuedPage, Visit
from retrieval.build import BuildReport, build, embed
from retrieval.candidates import (
    Candidate,
    CandidateSet,
    Provenance,
    Reason,
    ShopperProfile,
    SourceHit,
    Theme,
)
from retrieval.catalog_view import CandidateFilter, CatalogView
from retrieval.config import RetrievalConfig
from retrieval.context import HistoryItem, ShopperContext
from retrieval.embeddings import Encoder
from retrieval.errors import (
    DataFetchError,
    IngestError,
    NotBuiltError,
    RetrievalError,
    UnknownProductError,
)
from retrieval.exact_search import EXACT_SEARCH_MAX_PRODUCTS, ExactSearch
from retrieval.exposures import Exposure, ExposureStore, Outcome, Pause
from retrieval.ingest import RowErrors, read_catalog, read_interactions, write_rejects
from retrieval.loader import load_retriever
from retrieval.params import FusionParams, MFParams
from retrieval.records import EventKind, Interaction, Product, Shopper
from retrieval.retriever import RetrievalRequest, Retriever
from retrieval.store import CatalogChange, Store

__all__ = [
    "EXACT_SEARCH_MAX_PRODUCTS",
    "AheadStore",
    "BuildReport",
    "Candidate",
    "CandidateFilter",
    "CandidateSet",
    "CatalogChange",
    "CatalogView",
    "DataFetchError",
    "Encoder",
    "EventKind",
    "ExactSearch",
    "Exposure",
    "ExposureStore",
    "FusionParams",
    "HistoryItem",
    "IngestError",
    "Interaction",
    "KeptPage",
    "MFParams",
    "NotBuiltError",
    "Outcome",
    "Pause",
    "Product",
    "Provenance",
    "QueuedPage",
    "Reason",
    "RetrievalConfig",
    "RetrievalError",
    "RetrievalRequest",
    "Retriever",
    "RowErrors",
    "Shopper",
    "ShopperContext",
    "ShopperProfile",
    "SourceHit",
    "Store",
    "Theme",
    "UnknownProductError",
    "Visit",
    "build",
    "embed",
    "load_retriever",
    "read_catalog",
    "read_interactions",
    "write_rejects",
]
