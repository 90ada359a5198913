"""alada_optax: memory-efficient adaptive optimizers for optax, starting with Alada."""

from alada_optax.alada import ScaleByAladaState
from alada_optax.alada import alada
from alada_optax.alada import scale_by_alada
from alada_optax.matricize import MatrixDimensionNumbers
from alada_optax.matricize import MatrixPlan
from alada_optax.matricize import plan_for

__version__ = '0.1.0'

__all__ = (
    'MatrixDimensionNumbers',
    'MatrixPlan',
    'ScaleByAladaState',
    'alada',
    'plan_for',
    'scale_by_alada',
)
