"""Personas: the list, one persona in full, and the exact prompt a question would get.

Built-in personas are read-only; the user's own live in ``paths.user_personas_path()``
and are added, cloned, edited and deleted through ``fairpp_app.core.user_personas``, which
validates every change the way the loader does. The prompt preview is
``prompts.build_prompt(...).as_text()``: the text a base model is really given.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from fairpp_app.core import user_personas
from fairpp_app.core.errors import FairppError
from fairpp_app.core.personas import Persona
from fairpp_app.core.prompts import build_prompt
from fairpp_app.tui.screens.confirm_dialog import ConfirmScreen
from fairpp_app.tui.screens.persona_dialog import PersonaFormScreen


class PersonasScreen(Screen):
    SUB_TITLE = "Personas"
    BINDINGS = [
        Binding("a", "add", "Add"),
        Binding("c", "clone", "Clone"),
        Binding("e", "edit", "Edit"),
        Binding("delete,x", "delete", "Delete"),
    ]
    PALETTE = [
        ("Add a persona", "add", "a new persona in your personas file"),
        ("Clone the selected persona", "clone", "start from an existing description"),
        ("Edit the selected persona", "edit", "your own personas only"),
        ("Delete the selected persona", "delete", "your own personas only"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield DataTable(id="persona-list", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="persona-detail"):
                yield Static(id="persona-desc")
                yield Static("Prompt preview", classes="section")
                yield Static(id="prompt-preview", classes="prompt")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#persona-list", DataTable)
        table.add_column("#", key="number", width=3)
        table.add_column("name", key="name", width=26)
        table.add_column("source", key="source", width=8)
        self.fill()
        table.focus()

    def fill(self, select: int | None = None) -> None:
        table = self.query_one("#persona-list", DataTable)
        table.clear()
        for p in self.app.personas:
            table.add_row(str(p.number), p.name, "built-in" if p.builtin else "yours",
                          key=str(p.number))
        numbers = [p.number for p in self.app.personas]
        if select in numbers:
            table.move_cursor(row=numbers.index(select), animate=False)
        self.describe(self.selected())

    def selected(self) -> Persona | None:
        table = self.query_one("#persona-list", DataTable)
        if not table.row_count:
            return None
        return self.app.personas[table.cursor_row]

    def _sample_question(self):
        qid = getattr(self.app, "inspected_qid", None)
        store = self.app.store
        if qid:
            return store.get_question(qid)
        found = store.questions(limit=1)
        if found:
            return found[0]
        from fairpp_app.core.questions import iter_template_questions

        return next(iter_template_questions())

    def describe(self, p: Persona | None) -> None:
        if p is None:
            return
        source = ("built in (read-only; clone it to make your own)" if p.builtin
                  else f"yours, in {user_personas.user_personas_path()}")
        self.query_one("#persona-desc", Static).update(
            f"[b]{p.number}. {p.name}[/b]  ({p.slug})\n[dim]{source}[/dim]\n\n{p.description}")
        q = self._sample_question()
        self.query_one("#prompt-preview", Static).update(
            f"[dim]question {q.id}[/dim]\n\n" + build_prompt(q, p).as_text().replace("[", r"\["))

    @on(DataTable.RowHighlighted, "#persona-list")
    def _highlighted(self) -> None:
        self.describe(self.selected())

    # ---- actions -----------------------------------------------------------------------------

    def _changed(self, persona: Persona | None) -> None:
        if persona is None:
            return
        self.app.reload_personas()
        self.fill(persona.number)
        self.notify(f"saved persona {persona.number} ({persona.slug}) to "
                    f"{user_personas.user_personas_path()}")

    def action_add(self) -> None:
        number = user_personas.next_number(self.app.personas)
        blank = Persona(number, "", "", "", builtin=False)
        self.app.push_screen(PersonaFormScreen("Add a persona", blank, user_personas.save_persona),
                             self._changed)

    def action_clone(self) -> None:
        p = self.selected()
        if p is None:
            return
        copy = Persona(user_personas.next_number(self.app.personas), f"{p.slug}-copy",
                       f"{p.name} (copy)", p.description, builtin=False)
        self.app.push_screen(PersonaFormScreen(f"Clone persona {p.number}", copy,
                                               user_personas.save_persona), self._changed)

    def action_edit(self) -> None:
        p = self.selected()
        if p is None:
            return
        if p.builtin:
            self.notify(f"persona {p.number} is built in and read-only; clone it (c) to make "
                        "your own version", severity="warning")
            return

        def save(new: Persona):
            return user_personas.save_persona(new, replaces=p.number)

        self.app.push_screen(PersonaFormScreen(f"Edit persona {p.number}", p, save), self._changed)

    def action_delete(self) -> None:
        p = self.selected()
        if p is None:
            return
        if p.builtin:
            self.notify(f"persona {p.number} is built in and cannot be deleted",
                        severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            try:
                user_personas.delete_persona(p.number)
            except (FairppError, OSError) as exc:  # refused, or the file cannot be written
                self.app.show_error(exc)
                return
            self.app.reload_personas()
            self.fill()
            self.notify(f"deleted persona {p.number} ({p.slug})")

        self.app.push_screen(ConfirmScreen(f"Delete your persona {p.number} ({p.name})?"),
                             confirmed)
