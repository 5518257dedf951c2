"""Observables recorded per kept draw of a sampling run (see :mod:`slt._src.observables` for the list).

>>> import slt
>>> sorted(slt.observables.BUILTIN)
['distance', 'grad_norm', 'group_norms', 'loss', 'loss_at_center', 'weight_norm']
"""

from slt._src.observables import BUILTIN, DrawContext, Observable, group_names, per_sample_loss, subset_losses

__all__ = ["BUILTIN", "DrawContext", "Observable", "group_names", "per_sample_loss", "subset_losses"]
