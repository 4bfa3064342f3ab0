"""The published pretrained weights `fetch_weights` knows: where each file is, what it must be, and what it becomes.

torchvision's files are pinned by their full SHA-256 (torch.hub checks only the 8 hex digits in the file name, which
must be the digest's first 8: a test checks it). The full digests and sizes are those that public projects pinning
these files record (several independent ones agree for the ImageNet ResNets); the machines this was written on reach
no weight files, so a digest wrong despite its matching prefix would show as a refused download naming both.
keras.applications publishes an MD5 of its ResNet files and nothing else (`keras/src/applications/resnet.py`,
`WEIGHTS_HASHES`: a test checks these against the installed Keras), so those are pinned by MD5. Sizes are pinned
where they are known.
"""

import dataclasses
import os
import typing
import urllib.parse

from keras_retinanet.pretrained.download import Checksum

TORCHVISION_MODELS = "https://download.pytorch.org/models"
KERAS_APPLICATIONS_RESNET = "https://storage.googleapis.com/tensorflow/keras-applications/resnet"


@dataclasses.dataclass(frozen=True)
class Weights:
    """One published weights file: `name` (what `fetch_weights` takes), its `url`, the `checksum` it must match,
    the `conversion` it needs (a key of `keras_retinanet.pretrained.conversions.CONVERSIONS`), the ResNet `depth`,
    the torchvision RetinaNet `variant` ("v1", "v2"; None for backbones) and a one-line `description`."""

    name: str
    url: str
    checksum: Checksum
    conversion: str
    depth: int
    variant: typing.Optional[str] = None
    description: str = ""

    @property
    def file_name(self):
        """The published file name (the URL's last part), as `--source_dir` must hold it."""
        return os.path.basename(urllib.parse.urlsplit(self.url).path)

    def url_under(self, base_url=None):
        """The URL of the file, or of the file of the same name under `base_url` (a mirror) where one is given."""
        return f"{base_url.rstrip('/')}/{self.file_name}" if base_url else self.url


def _keras_resnet(depth, md5):
    return Weights(
        f"keras_resnet{depth}",
        f"{KERAS_APPLICATIONS_RESNET}/resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",
        Checksum(md5, algorithm="md5"),
        "keras_resnet",
        depth,
        description=f"keras.applications' ImageNet ResNet-{depth} (what model.backbone.weights=imagenet loads)",
    )


CATALOG = {
    weights.name: weights
    for weights in (
        Weights("retinanet_resnet50_fpn_coco", f"{TORCHVISION_MODELS}/retinanet_resnet50_fpn_coco-eeacb38b.pth",
                Checksum("eeacb38b7cec8cf93c57867e05eaab621047f19b0d2ec5accaa405f690da15b7", 136595076),
                "torchvision_retinanet", 50, "v1",
                "torchvision's COCO RetinaNet-ResNet50-FPN v1 (36.4 box AP on val2017)"),
        Weights("retinanet_resnet50_fpn_v2_coco", f"{TORCHVISION_MODELS}/retinanet_resnet50_fpn_v2_coco-5905b1c5.pth",
                Checksum("5905b1c544219215e544dbe319720397bc4e68de61a733a59350d7976645b769", 153130989),
                "torchvision_retinanet", 50, "v2",
                "torchvision's COCO RetinaNet-ResNet50-FPN v2 (41.5 box AP on val2017)"),
        Weights("torchvision_resnet50", f"{TORCHVISION_MODELS}/resnet50-0676ba61.pth",
                Checksum("0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a"),
                "torchvision_resnet", 50, description="torchvision's ImageNet ResNet-50 (IMAGENET1K_V1)"),
        Weights("torchvision_resnet50_v2", f"{TORCHVISION_MODELS}/resnet50-11ad3fa6.pth",
                Checksum("11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca", 102540417),
                "torchvision_resnet", 50, description="torchvision's ImageNet ResNet-50 (IMAGENET1K_V2)"),
        Weights("torchvision_resnet101", f"{TORCHVISION_MODELS}/resnet101-63fe2227.pth",
                Checksum("63fe2227b86e8f1f2063f43a75c84d195911b6a0eace650907dd3dc62dd49a0a"),
                "torchvision_resnet", 101, description="torchvision's ImageNet ResNet-101 (IMAGENET1K_V1)"),
        _keras_resnet(50, "4d473c1dd8becc155b73f8504c6f6626"),
        _keras_resnet(101, "88cf7a10940856eca736dc7b7e228a21"),
        _keras_resnet(152, "ee4c566cf9a93f14d82f913c2dc6dd0c"),
    )
}
KNOWN_NAMES = tuple(CATALOG)
