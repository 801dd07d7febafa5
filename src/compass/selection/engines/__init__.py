"""Engines beyond one process. ``ray_engine`` needs the ``ray`` extra and is imported lazily."""
