"""The terminal app: the only part of fairpp that imports textual."""
