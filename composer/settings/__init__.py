"""Settings: one object, read from the environment (``COMPOSER_`` prefix) and passed down.

Every group lives here, so any layer may import its settings without importing another
layer: ``Settings`` (root), ``api``, ``vllm``, ``words``, and the backends' names.
"""

from composer.settings.ahead import AheadSettings
from composer.settings.api import ApiKeyConfig, ApiSettings, Scope
from composer.settings.experiments import ExperimentSettings
from composer.settings.llm import DEFAULT_MODEL, BackendName, resolved_dtype
from composer.settings.root import DEFAULT_PSEUDONYM_SALT, Settings
from composer.settings.vllm import VLLMSettings
from composer.settings.words import WordSettings

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PSEUDONYM_SALT",
    "AheadSettings",
    "ApiKeyConfig",
    "ApiSettings",
    "BackendName",
    "ExperimentSettings",
    "Scope",
    "Settings",
    "VLLMSettings",
    "WordSettings",
    "resolved_dtype",
]
