"""Servers of our own on loopback (PostgreSQL, Chroma, the page API) and the local copy of
the production topology they make together with a vLLM server."""

from composer.topology.api_server import ApiServer, ApiServerError
from composer.topology.chroma import ChromaServer, ChromaServerError
from composer.topology.postgres import PostgresCluster, PostgresUnavailable
from composer.topology.stack import SHOPS, LocalTopology, TopologyError, TopologyPlan

__all__ = [
    "SHOPS",
    "ApiServer",
    "ApiServerError",
    "ChromaServer",
    "ChromaServerError",
    "LocalTopology",
    "PostgresCluster",
    "PostgresUnavailable",
    "TopologyError",
    "TopologyPlan",
]
