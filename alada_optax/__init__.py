"""alada_optax: memory-efficient adaptive optimizers for optax, starting with Alada."""

from alada_optax.alada import ScaleByAladaState
from alada_optax.alada import alada
from alada_optax.alada import scale_by_alada
from alada_optax.came import ScaleByCAMEState
from alada_optax.came import came
from alada_optax.came import scale_by_came
from alada_optax.matricize import MatrixDimensionNumbers
from alada_optax.matricize import MatrixPlan
from alada_optax.matricize import plan_for
from alada_optax.smmf import ScaleBySMMFState
from alada_optax.smmf import scale_by_smmf
from alada_optax.smmf import smmf
from alada_optax.smmf import square_shape

__version__ = '0.1.0'

__all__ = (
    'MatrixDimensionNumbers',
    'MatrixPlan',
    'ScaleByAladaState',
    'ScaleByCAMEState',
    'ScaleBySMMFState',
    'alada',
    'came',
    'plan_for',
    'scale_by_alada',
    'scale_by_came',
    'scale_by_smmf',
    'smmf',
    'square_shape',
)
