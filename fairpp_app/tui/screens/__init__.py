"""One Textual screen per module; ``fairpp_app.tui.app`` wires them into modes."""
