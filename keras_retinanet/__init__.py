"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) for TensorFlow 2 / Keras 3.

The package's parts: `backbones` (ResNet, C3-C5), `layers` (anchors, pyramid, heads, decoding), `boxes` (IoU, box
coding, matching, anchor labelling), `losses` (focal loss and box losses), `optimizers` (the paper's SGD schedule)
and `models` (the `RetinaNet` detector).

They load on first use (`keras_retinanet.RetinaNet`, `from keras_retinanet import layers`), so that importing the
package, `keras_retinanet.config` or a command line for its `--help` does not load TensorFlow. Saved `.keras` files
name our classes by the names Keras registers when their modules are imported ("keras_retinanet>RetinaNet"):
`keras_retinanet.models` imports every such module, and importing this package after Keras imports it.
"""

import importlib
import sys

__version__ = "0.1.0"

__all__ = ["RetinaNet", "backbones", "boxes", "layers", "losses", "optimizers"]
_PARTS = {"backbones", "boxes", "layers", "losses", "models", "optimizers"}


def __getattr__(name):
    if name == "RetinaNet":
        return importlib.import_module(f"{__name__}.models").RetinaNet
    if name in _PARTS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__, *_PARTS})


if "keras" in sys.modules:  # Keras may load a saved model next: our classes must be registered with it by then
    from keras_retinanet import models  # noqa: F401
