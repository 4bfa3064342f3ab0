"""Box overlap: pairwise IoU and generalized IoU (`keras_retinanet.boxes.iou`)."""

import numpy as np

from keras_retinanet.boxes import generalized_iou, pairwise_iou


def test_pairwise_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], np.float32)
    b = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 5, 10], [0, 0, 0, 0]], np.float32)
    iou = pairwise_iou(a, b).numpy()
    np.testing.assert_allclose(
        iou, [[1.0, 0.0, 0.5, 0.0], [25 / 175, 25 / 175, 0.0, 0.0]], rtol=1e-6
    )


def test_generalized_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    # Disjoint boxes: IoU 0, hull 30 x 10 = 300, union 200 -> GIoU = -(300 - 200) / 300.
    np.testing.assert_allclose(generalized_iou(a, b).numpy(), [1.0, -1 / 3], rtol=1e-6)
