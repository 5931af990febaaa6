"""The client's screens: join (name and room) and chat."""

from fer_tui.screens.chat import ChatScreen
from fer_tui.screens.join import JoinScreen

__all__ = ["ChatScreen", "JoinScreen"]
