"""Where weights come from and how they are loaded safely; imports no model module.

:mod:`.specs` says what a set of weights is (and holds their registry), :mod:`.resolve`
where its file is found, :mod:`.loading` how it is read safely, :mod:`.convert` how
published checkpoints become safetensors. The public API is re-exported here.
"""

from . import loading, published, resolve, specs
from .loading import load_state_dict, load_weights, sha256_of
from .published import hub_location, own_weight_spec
from .resolve import (
    ORIGINS,
    default_weights_dir,
    download_weights,
    is_offline,
    own_folders,
    resolve_weights,
    shipped_weights_dir,
    weights_available,
)
from .specs import (
    WEIGHTS,
    ConvertedWeightSpec,
    ManualDownloadWeightSpec,
    MissingWeightsError,
    OwnWeightSpec,
    ResolvedWeights,
    UnsafeWeightsError,
    WeightSpec,
    get_weight_spec,
    register_weights,
)

__all__ = [*specs.__all__, *resolve.__all__, *loading.__all__, "hub_location", "own_weight_spec"]
