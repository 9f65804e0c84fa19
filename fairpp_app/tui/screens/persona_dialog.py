"""A modal form for one persona: number, slug, name and description.

The form does not judge the values itself: it hands a ``Persona`` to the save function it
was given (``userpersonas.save_persona``), whose validation is the file loader's, and shows
that function's error message in place until the user fixes it or gives up.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from fairpp_app.core.errors import FairppError
from fairpp_app.core.personas import Persona


class PersonaFormScreen(ModalScreen[Persona | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, title: str, persona: Persona, save: Callable[[Persona], object]) -> None:
        super().__init__()
        self.title_text = title
        self.persona = persona
        self.save_fn = save

    def compose(self) -> ComposeResult:
        p = self.persona
        with Vertical(id="persona-form", classes="dialog"):
            yield Static(f"[b]{self.title_text}[/b]", classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Label("number", classes="form-label")
                yield Input(str(p.number), type="integer", id="pf-number")
            with Horizontal(classes="form-row"):
                yield Label("slug", classes="form-label")
                yield Input(p.slug, id="pf-slug", placeholder="lower-case-words")
            with Horizontal(classes="form-row"):
                yield Label("name", classes="form-label")
                yield Input(p.name, id="pf-name")
            yield Label("description (the system prompt says: answer as this person would)")
            yield TextArea(p.description, id="pf-description", soft_wrap=True)
            yield Static(id="pf-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (ctrl+s)", variant="primary", id="pf-save")
                yield Button("Cancel (esc)", id="pf-cancel")

    def on_mount(self) -> None:
        self.query_one("#pf-slug" if self.persona.slug == "" else "#pf-name", Input).focus()

    def current(self) -> Persona:
        number = self.query_one("#pf-number", Input).value.strip()
        return Persona(number=int(number) if number.lstrip("-").isdigit() else 0,
                       slug=self.query_one("#pf-slug", Input).value.strip(),
                       name=self.query_one("#pf-name", Input).value.strip(),
                       description=self.query_one("#pf-description", TextArea).text.strip(),
                       builtin=False)

    @on(Button.Pressed, "#pf-save")
    def action_save(self) -> None:
        persona = self.current()
        try:
            self.save_fn(persona)
        except FairppError as exc:
            self.query_one("#pf-error", Static).update(str(exc))
            return
        self.dismiss(persona)

    @on(Button.Pressed, "#pf-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
