"""Members of the room with the expression of each one's latest message."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from fer_tui.emotions import emoji_for
from fer_tui.inert import append_inert
from hub.protocol import Member


def format_members(members: Sequence[Member], me: str | None) -> Text:
    text = Text()
    text.append(f"Members ({len(members)})\n", style="bold")
    for member in sorted(members, key=lambda m: m.user.casefold()):
        text.append("● ", style="green")
        append_inert(text, member.user, "bold" if member.user == me else "")
        if member.emotion is not None:
            label = member.emotion.label
            append_inert(text, f"  {emoji_for(label)} {label}", "dim")
        text.append("\n")
    return text


class MemberList(Static):
    """The member list (updated on join, presence and every message)."""

    def __init__(self, me: str | None = None, **kwargs: object) -> None:
        super().__init__(format_members((), me), **kwargs)  # type: ignore[arg-type]
        self.me = me
        self.members: tuple[Member, ...] = ()

    def set_members(self, members: Sequence[Member]) -> None:
        self.members = tuple(members)
        self.update(format_members(self.members, self.me))

    def note_emotion(self, user: str, member: Member) -> None:
        """Record ``user``'s latest expression from a message they sent.

        Messages from history may come from people who have left: they stay out.
        """
        if any(m.user == user and m != member for m in self.members):  # unchanged: no redraw
            self.set_members([member if m.user == user else m for m in self.members])
