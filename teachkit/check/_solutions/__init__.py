"""Reference solutions, one self-contained file per exercise, printed by ``teachkit.check.solution``.

Each file defines a function with the exercise's name and imports only public libraries (torch,
numpy, math, random); ``tests/test_solutions.py`` runs every file through its checker. The files are
read as text, never imported by teachkit.
"""
