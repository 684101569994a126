"""Browser-facing files: static pages, the templates the server renders, and their scripts.

Static pages (``portal.html``, ``intake.html``, ``status.html``, ``review.html``) are sent as
they are and talk to JSON routes; ``templates/`` holds the Jinja2 templates that
:mod:`dignity.web.render` fills on the server (the transparency report, the statement of
reasons). ``static/pdq.js`` is the on-device PDQ hasher (one ES module, also run by Node in the
tests), ``static/md5.js`` the MD5 used for videos, ``static/i18n.js`` the pages'
translation and helpline code (catalogues in :mod:`dignity.i18n`), ``static/keep.js`` the
Copy, Print and Save of the codes the portal and the takedown receipt show only once, and the
other ``static/`` files are the pages' scripts and styles. :mod:`dignity.api.pages` and
:mod:`dignity.api.portal` serve them.
"""
