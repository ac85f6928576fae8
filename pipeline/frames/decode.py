"""Safe JPEG decoding: refuse hostile or broken frames with a clear reason, decode at reduced size.

Checks run from cheapest to dearest: empty object, magic bytes (a PNG or a text file named
``.jpg``), the frame header's dimensions (a decompression bomb is refused before any pixel is
decoded), the end-of-image marker (a truncated upload), and finally ``cv2.imdecode`` itself.
With ``max_width`` the decoder's DCT scaling (``IMREAD_REDUCED_COLOR_2/4/8``) produces the
smallest scale still at least ``max_width`` wide: a 1080p frame at 1/4 decodes several times faster.
"""

from __future__ import annotations

import cv2
import numpy as np

JPEG_MAGIC = b"\xff\xd8\xff"
_EOI = b"\xff\xd9"
# Start-of-frame markers carrying the image size (baseline, progressive, lossless, arithmetic).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn have no length field
_SOS = 0xDA
_REDUCED_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
_OTHER_FORMATS = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"RIFF", "a RIFF (WebP?) file"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
)


class BadFrame(ValueError):
    """A frame that cannot or must not be decoded; ``reason`` says why (for logs and counters)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe_non_jpeg(data: bytes) -> str:
    for magic, what in _OTHER_FORMATS:
        if data.startswith(magic):
            return f"not a JPEG: it is {what}"
    head = data[:16]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"not a JPEG: it looks like text starting {head.decode('ascii')!r}"
    return f"not a JPEG: it starts with bytes {head[:8].hex(' ')}, not ff d8 ff"


def _segments(data: bytes):
    """``(marker, offset of its length field, length)`` of each marker segment after SOI, up to and
    including the first SOS; stops quietly where the data ends. Raises :class:`BadFrame` for
    malformed markers."""
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise BadFrame(f"corrupt JPEG: expected a marker at byte {pos}, found {data[pos]:#04x}")
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker are legal
            pos += 1
        if pos >= n:
            return
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if pos + 2 > n:
            return
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise BadFrame(f"corrupt JPEG: segment {marker:#04x} at byte {pos - 2} has length {length}")
        yield marker, pos, length
        if marker == _SOS:
            return
        pos += length


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """Width and height from the JPEG frame header (SOFn), read without decoding any pixels.

    Raises :class:`BadFrame` when the marker segments are malformed or no frame header comes
    before the scan data.
    """
    for marker, pos, _ in _segments(data):
        if marker in _SOF_MARKERS:
            if pos + 7 > len(data):
                break
            height = int.from_bytes(data[pos + 3:pos + 5], "big")
            width = int.from_bytes(data[pos + 5:pos + 7], "big")
            if width == 0 or height == 0:
                raise BadFrame(f"unsupported JPEG: frame header gives size {width}x{height}")
            return width, height
        if marker == _SOS:
            raise BadFrame("corrupt JPEG: scan data starts before any frame header (SOF)")
    raise BadFrame(f"truncated JPEG: no frame header (SOF) in its {len(data)} bytes")


def _has_end_of_image(data: bytes) -> bool:
    """Whether an end-of-image marker follows the first scan's start. Bytes after it (padding,
    a camera's metadata trailer) are fine; an EOI inside an APP segment (an EXIF thumbnail's)
    does not count, so a frame cut off in its scan data is still found truncated."""
    scan = next((pos for marker, pos, _ in _segments(data) if marker == _SOS), None)
    # Searched from the end, where the marker of a whole frame is: not through the scan data.
    return scan is not None and data.rfind(_EOI, scan) != -1


def reduction_for(width: int, max_width: int | None) -> int:
    """The largest DCT scale divisor (8, 4, 2 or 1) keeping the decoded width >= ``max_width``."""
    if not max_width:
        return 1
    for factor, _ in _REDUCED_FLAGS:
        if -(-width // factor) >= max_width:  # libjpeg rounds scaled sizes up
            return factor
    return 1


def decode_frame(data: bytes, *, max_pixels: int, max_width: int | None = None) -> np.ndarray:
    """Decode JPEG ``data`` to a BGR uint8 array, or raise :class:`BadFrame` naming the problem.

    ``max_pixels`` bounds width*height as declared in the header (decompression-bomb guard);
    ``max_width`` asks for the cheapest reduced decode (1/2, 1/4, 1/8) still that wide.
    """
    if not data:
        raise BadFrame("empty object (0 bytes)")
    if not data.startswith(JPEG_MAGIC):
        raise BadFrame(_describe_non_jpeg(bytes(data[:16])))
    width, height = jpeg_dimensions(data)
    if width * height > max_pixels:
        raise BadFrame(
            f"decompression bomb refused: header says {width}x{height} = {width * height / 1e6:.1f} Mpx, "
            f"more than max_pixels={max_pixels}"
        )
    if not _has_end_of_image(data):
        raise BadFrame(f"truncated JPEG: {len(data)} bytes and no end-of-image marker (ff d9)")
    factor = reduction_for(width, max_width)
    flag = dict(_REDUCED_FLAGS).get(factor, cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise BadFrame(f"corrupt JPEG: the decoder rejected this {width}x{height} image")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def shrink_to_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` scaled down once to ``width`` (height as :func:`detectors.working_size` rounds it),
    the way the detectors shrink their input: exact 2x halvings (2x2 means) while it is at least
    twice too large, then area averaging. Returned unchanged when it is not wider.

    The worker does this once per frame for all detectors instead of each detector doing it
    again (`citywatch bench`: the four per-detector shrinks were the largest single cost).
    """
    h, w = image.shape[:2]
    if w <= width:
        return image
    th = max(1, round(h * width / w))
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * th:
        half = (image.shape[1] // 2, image.shape[0] // 2)
        image = cv2.resize(image[: half[1] * 2, : half[0] * 2], half, interpolation=cv2.INTER_LINEAR)
    if image.shape[:2] != (th, width):
        image = cv2.resize(image, (width, th), interpolation=cv2.INTER_AREA)
    return image
