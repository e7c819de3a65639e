"""The Jinja2 templates and label catalogs (i18n/*.yaml) zachot-gen renders with.

Package data: installed as ``generator.templates`` (pyproject.toml maps this folder there),
read through :func:`importlib.resources.files`, so an installed zachot-gen renders without a
checkout. No code lives here.
"""
