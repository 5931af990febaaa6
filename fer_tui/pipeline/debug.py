"""``--debug-dir``: save the annotated frame and the 48×48 crop behind each message.

Off by default; this is the only code in the client that writes image files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_tui.pipeline.analysis import Analysis


class DebugWriter:
    """Write ``<id>_frame.jpg`` (face box and label drawn) and ``<id>_face.png`` to a folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)

    def save(self, analysis: Analysis | None, name: str) -> list[Path]:
        """Save what ``analysis`` holds under ``name``; return the files written."""
        import cv2

        if analysis is None or analysis.frame is None:
            return []
        written = []
        frame = analysis.frame.copy()
        if analysis.box is not None:
            x, y, w, h = analysis.box
            cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
            caption = f"{analysis.label or analysis.reason} {analysis.confidence:.0%}"
            cv2.putText(
                frame, caption, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2
            )
        written.append(self._write(f"{name}_frame.jpg", frame))
        if analysis.crop is not None:
            written.append(self._write(f"{name}_face.png", analysis.crop))
        return written

    def _write(self, file_name: str, image: np.ndarray) -> Path:
        # Encode in memory and write from Python, so audit hooks see every file written.
        import cv2

        ok, data = cv2.imencode(Path(file_name).suffix, image)
        if not ok:
            raise ValueError(f"cannot encode {file_name}")
        path = self.folder / file_name
        path.write_bytes(data.tobytes())
        return path
