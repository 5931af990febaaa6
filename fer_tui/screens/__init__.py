"""The client's screens: join (name and room), chat, and its small dialogs."""

from fer_tui.screens.chat import ChatScreen
from fer_tui.screens.dialogs import ConfirmPaste, PickLabel
from fer_tui.screens.join import JoinScreen

__all__ = ["ChatScreen", "ConfirmPaste", "JoinScreen", "PickLabel"]
