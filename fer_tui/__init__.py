"""FER-TMS terminal client: chat messages tagged with the sender's facial expression.

Kept import-light on purpose: the hub and the training commands import
:mod:`fer_tui.emotions` and :mod:`fer_tui.preprocess` without pulling in Textual,
OpenCV or LiteRT.
"""

__version__ = "0.1.0"
