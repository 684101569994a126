"""Browser-facing files: the victim portal's page (``portal.html``) and its static scripts.

``static/pdq.js`` is the on-device PDQ hasher (one ES module, also run by Node in the tests),
``static/md5.js`` the MD5 used for videos, ``static/portal.js`` the page logic and
``static/portal.css`` its styles. :mod:`dignity.api.portal` serves them.
"""
