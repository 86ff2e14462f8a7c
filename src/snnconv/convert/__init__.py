"""ANN → SNN conversion: explicit passes over a torch.fx graph, chained per method."""

import snnconv.convert.calif  # noqa: F401  (registers method "calif", seed 003)
import snnconv.convert.ratenorm  # noqa: F401  (registers method "ratenorm", issue 9)
from snnconv.convert import calibration  # noqa: F401  (registers the "cos" and "srp" methods)
from snnconv.convert.bitserial import quantized_reference
from snnconv.convert.check import check_convertible
from snnconv.convert.fold_bn import fold_bn
from snnconv.convert.methods import convert, list_methods, register_method, replace_activations
from snnconv.convert.network import SpikingNetwork
from snnconv.convert.trace import SNNTracer, trace

__all__ = [
    "SNNTracer", "SpikingNetwork", "check_convertible", "convert", "fold_bn", "list_methods",
    "quantized_reference", "register_method", "replace_activations", "trace",
]  # fmt: skip
