"""``--debug-dir``: save the annotated frame and the 48×48 crop behind each message.

Off by default; this is the only code in the client that writes image files.
"""

from __future__ import annotations

from pathlib import Path

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
            cv2.putText(frame, caption, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                        (0, 255, 0), 2)
        frame_path = self.folder / f"{name}_frame.jpg"
        cv2.imwrite(str(frame_path), frame)
        written.append(frame_path)
        if analysis.crop is not None:
            crop_path = self.folder / f"{name}_face.png"
            cv2.imwrite(str(crop_path), analysis.crop)
            written.append(crop_path)
        return written
