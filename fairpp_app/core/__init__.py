"""The domain core: questions, personas, prompts, answers, metrics, weighting, events, errors.

Nothing here touches the database, a model engine or the terminal: every other folder builds
on these modules, and they import nothing from the rest of the package.
"""
