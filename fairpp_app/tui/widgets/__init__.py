"""Reusable pieces of the terminal app: bars, heatmaps, forms, tables, plots, the palette."""
