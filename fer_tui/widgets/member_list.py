"""Members of the room: the expression of each one's latest message and a mood sparkline."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from fer_tui.emotions import emoji_for
from fer_tui.inert import append_inert
from fer_tui.moods import MoodTracker, sparkline
from fer_tui.widgets.nick import nick_style
from hub.protocol import Member

#: Names are padded to this width so the sparklines line up.
NAME_WIDTH = 10


def format_members(
    members: Sequence[Member], me: str | None, moods: MoodTracker | None = None
) -> Text:
    text = Text()
    text.append(f"Members ({len(members)})\n", style="bold")
    for member in sorted(members, key=lambda m: m.user.casefold()):
        name = member.user  # never cut: two long names must not look alike
        text.append("● ", style="green")
        style = "bold underline" if member.user == me else nick_style(member.user)
        append_inert(text, name, style)
        text.append(" " * max(0, NAME_WIDTH - len(name)))
        text.append(" ")
        if moods is not None:
            text.append_text(sparkline(moods.last_tags(member.user)))
        if member.emotion is not None:
            text.append(f" {emoji_for(member.emotion.label)}", style="dim")
        text.append("\n")
    return text


class MemberList(Static):
    """The member list (updated on join, presence and every message)."""

    def __init__(self, me: str | None = None, **kwargs: object) -> None:
        # ignore: kwargs are Textual's widget options (id, classes, ...), passed on unchanged.
        super().__init__(format_members((), me), **kwargs)  # type: ignore[arg-type]
        self.me = me
        self.members: tuple[Member, ...] = ()
        self.moods: MoodTracker | None = None

    def set_members(self, members: Sequence[Member], moods: MoodTracker | None = None) -> None:
        self.members = tuple(members)
        if moods is not None:
            self.moods = moods
        self.update(format_members(self.members, self.me, self.moods))

    def note_emotion(self, user: str, member: Member) -> None:
        """Record ``user``'s latest expression from a message they sent.

        Messages from history may come from people who have left: they stay out.
        """
        if any(m.user == user and m != member for m in self.members):  # unchanged: no redraw
            self.set_members([member if m.user == user else m for m in self.members])
