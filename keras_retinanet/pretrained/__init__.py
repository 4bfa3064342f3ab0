"""Published pretrained weights, fetched once into a cache folder, checked, and converted to our formats.

    path = fetch_weights("retinanet_resnet50_fpn_coco")      # <cache>/retinanet_resnet50_fpn_coco.keras

`fetch_weights` downloads the published file of a known name (`KNOWN_NAMES`, see `catalog.py`) into the cache
(`default_cache_dir()`: `$KERAS_RETINANET_CACHE`, else `~/.cache/keras_retinanet`), resuming an interrupted download,
checks its digest and size, converts it on first use (torchvision RetinaNets into a `.keras` detector, ImageNet
ResNets into the `.weights.h5` of our `ResNetBackbone`) and then reuses the converted file. Offline, `source_dir` is
a folder holding the published file under its published name (checked the same way); `base_url` a mirror serving
the published file names.
"""

import logging
import os

from keras_retinanet.errors import ModelError, one_line
from keras_retinanet.pretrained import catalog
from keras_retinanet.pretrained.catalog import KNOWN_NAMES
from keras_retinanet.pretrained.download import DownloadError, check_file, download, holds

CACHE_ENVIRONMENT_VARIABLE = "KERAS_RETINANET_CACHE"
logger = logging.getLogger(__name__)


class WeightsFetchError(ModelError):
    """Weights that are unknown, cannot be fetched, are not the published file, or do not convert; the message names
    the weights, the file or the URL."""


def default_cache_dir():
    """`$KERAS_RETINANET_CACHE` where it is set, else `~/.cache/keras_retinanet`."""
    return os.environ.get(CACHE_ENVIRONMENT_VARIABLE) or os.path.join(os.path.expanduser("~"), ".cache",
                                                                      "keras_retinanet")


def is_known(name):
    """Whether `fetch_weights` knows weights called `name`."""
    return name in catalog.CATALOG


def weights_entry(name):
    """The `catalog.Weights` called `name`; a `WeightsFetchError` listing the known names where there is none."""
    if not is_known(name):
        raise WeightsFetchError(f"unknown pretrained weights {name!r}; known: {', '.join(catalog.CATALOG)}")
    return catalog.CATALOG[name]


def fetch_weights(name, cache_dir=None, source_dir=None, base_url=None):
    """The path of the weights `name` converted to our format (`<cache_dir>/<name>.keras` for detectors,
    `<cache_dir>/<name>.weights.h5` for backbones), fetched and converted if the cache does not hold them yet.

    Args:
        name: one of `KNOWN_NAMES`.
        cache_dir: where downloads and converted files go; default `default_cache_dir()`.
        source_dir: a folder holding the published file (its published name) to use instead of downloading it.
        base_url: a mirror to download the published file name from instead of the published URL's folder.

    Raises:
        WeightsFetchError: an unknown name (the message lists the known ones), a file that cannot be fetched, or
            that is not the published one (the message gives the pinned and the found digest), or a conversion
            that fails; nothing is then written under the converted file's name.
    """
    weights = weights_entry(name)
    cache_dir = cache_dir or default_cache_dir()
    conversion = _conversion(weights)
    converted = os.path.join(cache_dir, weights.name + conversion.suffix)
    if os.path.isfile(converted):  # only ever written whole (renamed into place)
        return converted
    try:
        if source_dir is not None:
            published = os.path.join(source_dir, weights.file_name)
            check_file(published, weights.checksum)
        else:
            published = os.path.join(cache_dir, weights.file_name)
            if not holds(published, weights.checksum):
                logger.info("downloading %s to %s", weights.url_under(base_url), published)
                download(weights.url_under(base_url), published, weights.checksum)
    except DownloadError as error:
        raise WeightsFetchError(str(error)) from None
    _convert(conversion, weights, published, converted)
    return converted


def _conversion(weights):
    """The `conversions.Conversion` of `weights`. Imported here: the conversions need Keras, the downloads (which
    `keras_retinanet.datasets` uses too) do not."""
    from keras_retinanet.pretrained.conversions import CONVERSIONS

    return CONVERSIONS[weights.conversion]


def _convert(conversion, weights, published, converted):
    """Writes the `conversion` of `published` to a temporary file beside `converted`, then renames it into place: a
    conversion that fails or is killed leaves nothing under the name `converted`."""
    temporary = f"{converted.removesuffix(conversion.suffix)}.converting-{os.getpid()}{conversion.suffix}"
    logger.info("converting %s to %s", published, converted)
    try:
        os.makedirs(os.path.dirname(converted) or ".", exist_ok=True)
        conversion.convert(weights, published, temporary)
        os.replace(temporary, converted)
    except ModelError:  # the reader's own error, naming the file
        raise
    except (ValueError, OSError) as error:  # a state dict or weights file that does not fit (named by the converter)
        raise WeightsFetchError(f"{published}: cannot convert it to {converted} ({type(error).__name__}: "
                                f"{one_line(error)})") from error
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)


def model_settings(name, path):
    """{config key: value} that use the converted weights `name` at `path`: `model.init_from` for detectors, the
    `model.backbone` settings (depth, weights and those the weights were trained with) for backbones."""
    weights = weights_entry(name)
    backbone = _conversion(weights).backbone
    if backbone is None:
        return {"model.init_from": path}
    settings = {"depth": weights.depth, "weights": path, **backbone}
    return {f"model.backbone.{key}": value for key, value in settings.items()}


__all__ = ["KNOWN_NAMES", "WeightsFetchError", "default_cache_dir", "fetch_weights", "is_known", "model_settings",
           "weights_entry"]
