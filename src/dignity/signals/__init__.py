"""Signals: what we learn about an upload besides its hashes, from plug-ins found with pluggy.

:mod:`~dignity.signals.base` defines the plug-in contracts, :mod:`~dignity.signals.hooks` the
hooks, :mod:`~dignity.signals.builtin` registers the built-ins (C2PA, IPTC/XMP, generator
metadata, Stable Diffusion watermarks, nudity) and :mod:`~dignity.signals.runner` runs them all
on one decoded :class:`~dignity.media.Media`.
"""
