"""alada_optax: memory-efficient adaptive optimizers for optax, starting with Alada."""

from alada_optax import hlo
from alada_optax import sharding
from alada_optax._quantize import Int8
from alada_optax.adapprox import ScaleByAdapproxState
from alada_optax.adapprox import adapprox
from alada_optax.adapprox import scale_by_adapprox
from alada_optax.alada import ScaleByAladaState
from alada_optax.alada import alada
from alada_optax.alada import scale_by_alada
from alada_optax.came import ScaleByCAMEState
from alada_optax.came import came
from alada_optax.came import scale_by_came
from alada_optax.matricize import MatrixDimensionNumbers
from alada_optax.smmf import ScaleBySMMFState
from alada_optax.smmf import scale_by_smmf
from alada_optax.smmf import smmf
from alada_optax.subset_norm import ScaleByAdamSNSMState
from alada_optax.subset_norm import ScaleBySubsetNormState
from alada_optax.subset_norm import ScaleBySubspaceMomentumState
from alada_optax.subset_norm import adamw_sn
from alada_optax.subset_norm import adamw_snsm
from alada_optax.subset_norm import scale_by_adam_snsm
from alada_optax.subset_norm import scale_by_subset_norm
from alada_optax.subset_norm import scale_by_subspace_momentum

__version__ = '0.1.0'

# Public API, sorted. matricize's plans (MatrixPlan, plan_for) and SMMF's
# square_shape are internals: import them from their modules.
__all__ = (
    'Int8',
    'MatrixDimensionNumbers',
    'ScaleByAdamSNSMState',
    'ScaleByAdapproxState',
    'ScaleByAladaState',
    'ScaleByCAMEState',
    'ScaleBySMMFState',
    'ScaleBySubsetNormState',
    'ScaleBySubspaceMomentumState',
    'adamw_sn',
    'adamw_snsm',
    'adapprox',
    'alada',
    'came',
    'hlo',
    'scale_by_adam_snsm',
    'scale_by_adapprox',
    'scale_by_alada',
    'scale_by_came',
    'scale_by_smmf',
    'scale_by_subset_norm',
    'scale_by_subspace_momentum',
    'sharding',
    'smmf',
)
