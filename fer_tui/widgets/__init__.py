"""The chat screen's widgets."""

from fer_tui.widgets.face_preview import FacePreview
from fer_tui.widgets.member_list import MemberList
from fer_tui.widgets.message_log import LogEntry, MessageLog
from fer_tui.widgets.status_bar import StatusBar

__all__ = ["FacePreview", "LogEntry", "MemberList", "MessageLog", "StatusBar"]
