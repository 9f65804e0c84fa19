"""The SQLite database: its schema and versions, and every query the rest of the package runs.

Other modules never write SQL; they call the methods of :class:`~fairpp_app.store.database.Store`
(and the page-by-page readers of :mod:`~fairpp_app.store.browse`).
"""
