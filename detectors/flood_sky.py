"""Sky, and open water running up to it: smooth areas connected to the top of the frame.

Flood evidence is about a road. From one picture a smooth grey sky, fog, or a calm sea meeting the
horizon look like standing water, and when a camera tilts up they reach into the road region. They
share one trait a flooded street lacks: they are one smooth sheet connected to the top edge of the
frame (a street's water is cut off from the sky by kerbs, cars, walls and trees). So the flood
detector never counts pixels of such a sheet.
"""

from __future__ import annotations

import cv2
import numpy as np

SKY_TEXTURE = 16  # blurred |Sobel x| + |Sobel y| below this is smooth (~2 grey levels per px)
SKY_TOP_SHARE = 0.1  # a sheet must touch at least this share of the top row to be sky
SKY_BLUR = 7  # px at working size: gradients are averaged over this window
MAX_COMPARED = 4  # sky sheets found by comparing labels; more by a lookup table


def open_sky(gray: np.ndarray) -> np.ndarray:
    """Bool mask (``gray``'s shape) of the smooth sheets touching the top row over at least
    :data:`SKY_TOP_SHARE` of its width."""
    gx, gy = cv2.spatialGradient(gray)
    grad = cv2.add(cv2.convertScaleAbs(gx), cv2.convertScaleAbs(gy), dtype=cv2.CV_16U)
    # the window's sum in integers (at most 510 * 49): mean < SKY_TEXTURE as sum < SKY_TEXTURE * 49
    window = cv2.boxFilter(grad, cv2.CV_16U, (SKY_BLUR, SKY_BLUR), normalize=False)
    smooth = (window < SKY_TEXTURE * SKY_BLUR * SKY_BLUR).view(np.uint8)
    count, labels = cv2.connectedComponents(smooth, connectivity=8)
    if count <= 1:
        return np.zeros(gray.shape, bool)
    top = np.bincount(labels[0], minlength=count)
    top[0] = 0  # label 0 is the textured background
    sky = np.flatnonzero(top >= SKY_TOP_SHARE * gray.shape[1])
    if sky.size > MAX_COMPARED:
        keep = np.zeros(count, bool)
        keep[sky] = True
        return keep[labels]
    mask = np.zeros(gray.shape, bool)
    for label in sky:  # rarely more than two sheets: a comparison each beats a lookup per pixel
        mask |= labels == label
    return mask
