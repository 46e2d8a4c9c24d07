"""Where weights come from and how they are loaded safely; imports no model module.

The public API, re-exported from the modules that implement it.
"""

from .weights import (
    WEIGHTS,
    ConvertedWeightSpec,
    ManualDownloadWeightSpec,
    MissingWeightsError,
    ResolvedWeights,
    UnsafeWeightsError,
    WeightSpec,
    default_weights_dir,
    download_weights,
    get_weight_spec,
    is_offline,
    load_all_specs,
    load_state_dict,
    load_weights,
    register_weights,
    resolve_weights,
    sha256_of,
    weights_available,
)

__all__ = [
    "WeightSpec",
    "ManualDownloadWeightSpec",
    "ConvertedWeightSpec",
    "ResolvedWeights",
    "MissingWeightsError",
    "UnsafeWeightsError",
    "WEIGHTS",
    "register_weights",
    "get_weight_spec",
    "load_all_specs",
    "resolve_weights",
    "load_state_dict",
    "load_weights",
    "download_weights",
    "weights_available",
    "is_offline",
    "default_weights_dir",
    "sha256_of",
]
