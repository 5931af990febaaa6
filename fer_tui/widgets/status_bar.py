"""One line of status: connection, room, camera, model, tagging, pending messages."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from fer_tui.inert import append_inert

_STATE_STYLE = {
    "online": "bold green",
    "connecting": "yellow",
    "offline": "bold red",
    "stopped": "bold red",
}


class StatusBar(Static):
    """Renders its reactive fields; the app sets them."""

    connection: reactive[str] = reactive("offline")
    detail: reactive[str] = reactive("")
    room: reactive[str] = reactive("")
    camera: reactive[str] = reactive("")
    model: reactive[str] = reactive("")
    tagging: reactive[bool] = reactive(True)
    pending: reactive[int] = reactive(0)

    def render(self) -> Text:
        # Most urgent first: a narrow terminal cuts the end of the line.
        text = Text(no_wrap=True, overflow="ellipsis")
        append_inert(text, f"● {self.connection}", _STATE_STYLE.get(self.connection, ""))
        if self.pending:
            text.append(f" · {self.pending} pending", style="yellow")
        text.append(" │ ", style="dim")
        text.append(
            "tagging on" if self.tagging else "tagging off",
            style="" if self.tagging else "bold yellow",
        )
        for name, value in (("#", self.room), ("cam ", self.camera), ("model ", self.model)):
            text.append(" │ ", style="dim")
            text.append(name, style="dim")
            append_inert(text, value or "—")  # the room and errors can come from the wire
        if self.detail:
            text.append(" │ ", style="dim")
            append_inert(text, self.detail, "dim")
        return text
