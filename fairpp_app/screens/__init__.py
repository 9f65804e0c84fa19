"""One Textual screen per module; ``fairpp_app.app`` wires them into modes."""
